; Scopes and definitions of `.bld`, for highlighting references to locals.

[
  (function_expression)
  (let_expression)
  (rec_attrset_expression)
  (let_attrset_expression)
] @local.scope

(function_expression parameter: (identifier) @local.definition.parameter)
(function_expression universal: (identifier) @local.definition.parameter)
(formal name: (identifier) @local.definition.parameter)

(let_expression
  (binding
    attrpath: (attrpath . attr: (identifier) @local.definition.var)))
(let_expression
  (inherit
    attrs: (inherited_attrs attr: (identifier) @local.definition.var)))
(let_expression
  (inherit_from
    attrs: (inherited_attrs attr: (identifier) @local.definition.var)))
(let_expression
  (type_alias name: (identifier) @local.definition.type))

(rec_attrset_expression
  (binding
    attrpath: (attrpath . attr: (identifier) @local.definition.field)))
(let_attrset_expression
  (binding
    attrpath: (attrpath . attr: (identifier) @local.definition.var)))

(identifier) @local.reference
