; Highlighting of `.bld`, with nvim-treesitter's capture names and its order: where patterns
; overlap, the later one wins (the general `@variable` first, the specific captures after it).

(identifier) @variable

(comment) @comment

[
  "if"
  "then"
  "else"
  "let"
  "in"
  "rec"
  "inherit"
  "assert"
  "with"
] @keyword

"or" @keyword.operator
(type_keyword) @keyword

(integer) @number
(float) @number.float

(string_expression) @string
(indented_string_expression) @string
(escape_sequence) @string.escape

(path_expression) @string.special.path
(hpath_expression) @string.special.path
(spath_expression) @string.special.path
(uri_expression) @string.special.url

(interpolation
  "${" @punctuation.special
  "}" @punctuation.special) @embedded
(interpolation_immediate
  "${" @punctuation.special
  "}" @punctuation.special) @embedded

((identifier) @constant.builtin
  (#any-of? @constant.builtin "true" "false" "null"))

((identifier) @variable.builtin
  (#any-of? @variable.builtin "builtins" "import" "throw" "abort" "derivation"))

(formal name: (identifier) @variable.parameter)
(function_expression parameter: (identifier) @variable.parameter)
(function_expression universal: (identifier) @variable.parameter)

(binding
  attrpath: (attrpath
    attr: (identifier) @variable.member))
(inherited_attrs attr: (identifier) @variable.member)
(select_expression
  attrpath: (attrpath
    attr: (identifier) @variable.member))
(has_attr_expression
  attrpath: (attrpath
    attr: (identifier) @variable.member))

(apply_expression
  function: [
    (identifier) @function.call
    (select_expression
      attrpath: (attrpath
        attr: (identifier) @function.call .))
  ])

(binding
  attrpath: (attrpath
    attr: (identifier) @function .)
  expression: (function_expression))

; Types.
(type_identifier) @type
((type_identifier) @type.builtin
  (#match? @type.builtin "^(Int|Float|Bool|String|Path|Null|Dyn|Drv|Any)$"))
(type_alias name: (identifier) @type.definition)
(type_field name: (identifier) @property)
(open_record) @punctuation.special

(ellipses) @punctuation.special

[
  "-"
  "!"
  "->"
  "||"
  "&&"
  "=="
  "!="
  "<"
  "<="
  ">"
  ">="
  "//"
  "+"
  "*"
  "/"
  "++"
  "?"
  "="
  "::"
] @operator

[
  ";"
  "."
  ","
  ":"
  "@"
] @punctuation.delimiter

[
  "("
  ")"
  "["
  "]"
  "{"
  "}"
] @punctuation.bracket
