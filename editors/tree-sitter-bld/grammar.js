/**
 * @file Tree-sitter grammar of buildit's `.bld` language.
 *
 * The language is defined by `lang/src/lexer.rs` and `lang/src/grammar.lalrpop` (Nix 2.8's
 * expression syntax, with type annotations `(e :: T)`, annotated bindings `a :: T = e;` and
 * `type Name = T;` aliases in `let`). The rules below follow the same layers as the lalrpop
 * grammar: functions/let/if/assert, operator expressions, application, selection, primaries.
 * String bodies are lexed by the external scanner in `src/scanner.c`, which knows where a
 * `"…"` or `''…''` fragment stops (before `${`, an escape or the closing quote).
 */

const PREC = {
  impl: 1,
  or: 2,
  and: 3,
  eq: 4,
  cmp: 5,
  update: 6,
  not: 7,
  add: 8,
  mul: 9,
  concat: 10,
  has: 11,
  neg: 12,
};

const PATH_CHAR = /[a-zA-Z0-9._\-+]/.source;

module.exports = grammar({
  name: 'bld',

  extras: $ => [/\s/, $.comment],

  word: $ => $.identifier,

  externals: $ => [
    $._string_fragment,
    $._indented_string_fragment,
  ],

  supertypes: $ => [$._expression],

  rules: {
    source_file: $ => optional(field('expression', $._expression)),

    _expression: $ => choice(
      $.function_expression,
      $.assert_expression,
      $.with_expression,
      $.let_expression,
      $.if_expression,
      $._expr_op,
    ),

    identifier: _ => /[a-zA-Z_][a-zA-Z0-9_'\-]*/,
    integer: _ => /[0-9]+/,
    float: _ => /([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?/,

    comment: _ => token(choice(
      seq('#', /[^\r\n]*/),
      seq('/*', /[^*]*\*+([^/*][^*]*\*+)*/, '/'),
    )),

    // Functions: `x: e`, `{ a, b ? 1, ... }: e`, `args@{ … }: e`, `{ … }@args: e`.
    function_expression: $ => seq(
      choice(
        field('parameter', $.identifier),
        field('formals', $.formals),
        seq(field('formals', $.formals), '@', field('universal', $.identifier)),
        seq(field('universal', $.identifier), '@', field('formals', $.formals)),
      ),
      ':',
      field('body', $._expression),
    ),

    formals: $ => seq(
      '{',
      optional(choice(
        seq(commaSep1($.formal), optional(seq(',', optional($.ellipses)))),
        $.ellipses,
      )),
      '}',
    ),
    formal: $ => seq(
      field('name', $.identifier),
      optional(seq('?', field('default', $._expression))),
    ),
    ellipses: _ => '...',

    assert_expression: $ => seq('assert', field('condition', $._expression), ';', field('body', $._expression)),
    // `with` parses (and is rejected by the checker with a diagnostic).
    with_expression: $ => seq('with', field('environment', $._expression), ';', field('body', $._expression)),

    let_expression: $ => seq(
      'let',
      repeat(choice($.binding, $.inherit, $.inherit_from, $.type_alias)),
      'in',
      field('body', $._expression),
    ),

    // `type Name = T;`: `type` is not a keyword (`type = 1;` is an ordinary binding).
    type_alias: $ => seq(
      field('keyword', alias($.identifier, $.type_keyword)),
      field('name', $.identifier),
      '=',
      field('type', $._type),
      ';',
    ),

    if_expression: $ => seq(
      'if', field('condition', $._expression),
      'then', field('consequence', $._expression),
      'else', field('alternative', $._expression),
    ),

    _expr_op: $ => choice(
      $.has_attr_expression,
      $.unary_expression,
      $.binary_expression,
      $._expr_app,
    ),

    has_attr_expression: $ => prec(PREC.has, seq(
      field('expression', $._expr_op),
      '?',
      field('attrpath', $.attrpath),
    )),

    unary_expression: $ => choice(
      prec(PREC.neg, seq(field('operator', '-'), field('argument', $._expr_op))),
      prec(PREC.not, seq(field('operator', '!'), field('argument', $._expr_op))),
    ),

    binary_expression: $ => choice(
      ...[
        [prec.right, PREC.impl, '->'],
        [prec.left, PREC.or, '||'],
        [prec.left, PREC.and, '&&'],
        [prec.left, PREC.eq, '=='],
        [prec.left, PREC.eq, '!='],
        [prec.left, PREC.cmp, '<'],
        [prec.left, PREC.cmp, '<='],
        [prec.left, PREC.cmp, '>'],
        [prec.left, PREC.cmp, '>='],
        [prec.right, PREC.update, '//'],
        [prec.left, PREC.add, '+'],
        [prec.left, PREC.add, '-'],
        [prec.left, PREC.mul, '*'],
        [prec.left, PREC.mul, '/'],
        [prec.right, PREC.concat, '++'],
      ].map(([fn, p, op]) => fn(p, seq(
        field('left', $._expr_op),
        field('operator', op),
        field('right', $._expr_op),
      ))),
    ),

    _expr_app: $ => choice($.apply_expression, $._expr_select),

    apply_expression: $ => seq(
      field('function', $._expr_app),
      field('argument', $._expr_select),
    ),

    _expr_select: $ => choice($.select_expression, $._primary),

    select_expression: $ => seq(
      field('expression', $._primary),
      '.',
      field('attrpath', $.attrpath),
      optional(seq('or', field('default', $._expr_select))),
    ),

    _primary: $ => choice(
      $.identifier,
      $.integer,
      $.float,
      $.string_expression,
      $.indented_string_expression,
      $.path_expression,
      $.hpath_expression,
      $.spath_expression,
      $.uri_expression,
      $.parenthesized_expression,
      $.annotation_expression,
      $.attrset_expression,
      $.rec_attrset_expression,
      $.let_attrset_expression,
      $.list_expression,
    ),

    parenthesized_expression: $ => seq('(', field('expression', $._expression), ')'),

    // `(e :: T)`: an expression with a type annotation (docs/types.md).
    annotation_expression: $ => seq(
      '(',
      field('expression', $._expression),
      '::',
      field('type', $._type),
      ')',
    ),

    attrset_expression: $ => seq('{', repeat($._binding), '}'),
    rec_attrset_expression: $ => seq('rec', '{', repeat($._binding), '}'),
    let_attrset_expression: $ => seq('let', '{', repeat($._binding), '}'),

    list_expression: $ => seq('[', repeat(field('element', $._expr_select)), ']'),

    _binding: $ => choice($.binding, $.inherit, $.inherit_from),

    binding: $ => seq(
      field('attrpath', $.attrpath),
      optional(seq('::', field('type', $._type))),
      '=',
      field('expression', $._expression),
      ';',
    ),

    inherit: $ => seq('inherit', optional(field('attrs', $.inherited_attrs)), ';'),
    inherit_from: $ => seq(
      'inherit',
      '(', field('expression', $._expression), ')',
      optional(field('attrs', $.inherited_attrs)),
      ';',
    ),
    inherited_attrs: $ => repeat1(field('attr', $._attr)),

    attrpath: $ => seq(field('attr', $._attr), repeat(seq('.', field('attr', $._attr)))),

    _attr: $ => choice(
      $.identifier,
      alias('or', $.identifier),
      $.string_expression,
      $.interpolation,
    ),

    interpolation: $ => seq('${', field('expression', $._expression), '}'),

    string_expression: $ => seq(
      '"',
      repeat(choice(
        alias($._string_fragment, $.string_fragment),
        $.interpolation,
        $.escape_sequence,
      )),
      '"',
    ),
    escape_sequence: _ => token.immediate(/\\(.|\s)/),

    indented_string_expression: $ => seq(
      "''",
      repeat(choice(
        alias($._indented_string_fragment, $.string_fragment),
        $.interpolation,
        alias($.indented_escape_sequence, $.escape_sequence),
      )),
      "''",
    ),
    indented_escape_sequence: _ => token.immediate(/''(\$|'|\\(.|\s))/),

    // Paths: `./a/b`, `a/b`, `/abs`, with interpolation `./pkgs/${name}.bld` (a literal
    // segment followed by an interpolation is one token ending with its `${`).
    path_expression: $ => choice(
      alias($._path, $.path_fragment),
      seq(
        alias($._path_interp_start, $.path_fragment),
        field('expression', $._expression),
        '}',
        repeat(choice(
          alias($._path_tail, $.path_fragment),
          seq(
            alias($._path_tail_interp, $.path_fragment),
            field('expression', $._expression),
            '}',
          ),
          $.interpolation_immediate,
        )),
      ),
    ),
    _path: _ => token(new RegExp(`${PATH_CHAR}*(\\/${PATH_CHAR}+)+\\/?`)),
    _path_interp_start: _ => token(new RegExp(`${PATH_CHAR}*(\\/${PATH_CHAR}+)*\\/\\$\\{`)),
    _path_tail: _ => token.immediate(new RegExp(`(${PATH_CHAR}|\\/)+`)),
    _path_tail_interp: _ => token.immediate(prec(1, new RegExp(`(${PATH_CHAR}|\\/)+\\$\\{`))),
    interpolation_immediate: $ => seq(
      alias(token.immediate('${'), '${'),
      field('expression', $._expression),
      '}',
    ),

    hpath_expression: _ => token(new RegExp(`~(\\/${PATH_CHAR}+)+\\/?`)),
    spath_expression: _ => token(new RegExp(`<${PATH_CHAR}+(\\/${PATH_CHAR}+)*>`)),
    uri_expression: _ => token(/[a-zA-Z][a-zA-Z0-9+\-.]*:[a-zA-Z0-9%/?:@&=+$,\-_.!~*']+/),

    // Types after `::` (docs/types.md).
    _type: $ => choice($.function_type, $._type_atom),
    function_type: $ => seq(field('parameter', $._type_atom), '->', field('result', $._type)),
    _type_atom: $ => choice(
      alias($.identifier, $.type_identifier),
      $.list_type,
      $.parenthesized_type,
      $.record_type,
    ),
    list_type: $ => seq('[', field('element', $._type), ']'),
    parenthesized_type: $ => seq('(', $._type, ')'),
    record_type: $ => seq(
      '{',
      optional(choice(
        seq(commaSep1($.type_field), optional(seq(',', $.open_record))),
        $.open_record,
      )),
      '}',
    ),
    open_record: _ => seq('.', token.immediate('.')),
    type_field: $ => seq(
      field('name', $.identifier),
      choice(':', field('optional', '?')),
      field('type', $._type),
    ),
  },
});

function commaSep1(rule) {
  return seq(rule, repeat(seq(',', rule)));
}
