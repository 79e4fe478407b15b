//! Lexer (placeholder until the grammar lands).
