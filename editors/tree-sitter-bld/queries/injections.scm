; Shell inside the strings a builder runs: phases (`buildPhase`, `installPhase`, …), their
; hooks (`preBuild`, `postInstall`, …), and `script`/`buildCommand`-style attributes.
; Interpolations `${…}` are left out of the shell text (they stay `.bld`).

((binding
  attrpath: (attrpath attr: (identifier) @_name .)
  expression: [
    (indented_string_expression)
    (string_expression)
  ] @injection.content)
  (#match? @_name "(Phase|Hook|Command|Script|^script|^(pre|post)[A-Z].*)$")
  (#set! injection.language "bash"))

((comment) @injection.content
  (#match? @injection.content "^#\\s*(TODO|FIXME|XXX|NOTE)")
  (#set! injection.language "comment"))
