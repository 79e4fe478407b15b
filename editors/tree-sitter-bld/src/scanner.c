/*
 * External scanner of the `.bld` tree-sitter grammar: the literal text of `"…"` and `''…''`
 * strings. A fragment runs up to (not including) the closing quote, an escape, or a `${` that
 * opens an interpolation; a regular grammar token cannot express "stop before `${` but not
 * before a lone `$`", hence this scanner. It keeps no state.
 */
#include "tree_sitter/parser.h"

enum TokenType {
  STRING_FRAGMENT,
  INDENTED_STRING_FRAGMENT,
};

void *tree_sitter_bld_external_scanner_create(void) { return NULL; }
void tree_sitter_bld_external_scanner_destroy(void *payload) { (void)payload; }
unsigned tree_sitter_bld_external_scanner_serialize(void *payload, char *buffer) {
  (void)payload;
  (void)buffer;
  return 0;
}
void tree_sitter_bld_external_scanner_deserialize(void *payload, const char *buffer,
                                                  unsigned length) {
  (void)payload;
  (void)buffer;
  (void)length;
}

/* `"…"`: stops before `"`, `\` and `${`; `$$` is literal text. */
static bool scan_string(TSLexer *lexer) {
  bool has_content = false;
  lexer->result_symbol = STRING_FRAGMENT;
  for (;;) {
    switch (lexer->lookahead) {
      case '"':
      case '\\':
        lexer->mark_end(lexer);
        return has_content;
      case '$':
        lexer->mark_end(lexer);
        lexer->advance(lexer, false);
        if (lexer->lookahead == '{') {
          return has_content;
        }
        if (lexer->lookahead == '$') {
          lexer->advance(lexer, false);
        }
        has_content = true;
        lexer->mark_end(lexer);
        break;
      case '\0':
        if (lexer->eof(lexer)) {
          lexer->mark_end(lexer);
          return has_content;
        }
        lexer->advance(lexer, false);
        has_content = true;
        break;
      default:
        lexer->advance(lexer, false);
        has_content = true;
        break;
    }
  }
}

/* `''…''`: stops before `''` (the end, or an escape `''$` `'''` `''\x`) and `${`. */
static bool scan_indented_string(TSLexer *lexer) {
  bool has_content = false;
  lexer->result_symbol = INDENTED_STRING_FRAGMENT;
  for (;;) {
    switch (lexer->lookahead) {
      case '\'':
        lexer->mark_end(lexer);
        lexer->advance(lexer, false);
        if (lexer->lookahead == '\'') {
          return has_content;
        }
        has_content = true;
        lexer->mark_end(lexer);
        break;
      case '$':
        lexer->mark_end(lexer);
        lexer->advance(lexer, false);
        if (lexer->lookahead == '{') {
          return has_content;
        }
        if (lexer->lookahead == '$') {
          lexer->advance(lexer, false);
        }
        has_content = true;
        lexer->mark_end(lexer);
        break;
      case '\0':
        if (lexer->eof(lexer)) {
          lexer->mark_end(lexer);
          return has_content;
        }
        lexer->advance(lexer, false);
        has_content = true;
        break;
      default:
        lexer->advance(lexer, false);
        has_content = true;
        break;
    }
  }
}

bool tree_sitter_bld_external_scanner_scan(void *payload, TSLexer *lexer,
                                           const bool *valid_symbols) {
  (void)payload;
  /* Both valid at once only happens during error recovery: no string context to trust. */
  if (valid_symbols[STRING_FRAGMENT] && valid_symbols[INDENTED_STRING_FRAGMENT]) {
    return false;
  }
  if (valid_symbols[STRING_FRAGMENT]) {
    return scan_string(lexer);
  }
  if (valid_symbols[INDENTED_STRING_FRAGMENT]) {
    return scan_indented_string(lexer);
  }
  return false;
}
