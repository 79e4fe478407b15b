//! The static type checker of `.bld`: Hindley–Milner inference with let-polymorphism (levels),
//! row-polymorphic records (open `..` and closed), optional fields from record patterns,
//! dictionaries `{ _ : T }` for computed keys, and `Dyn` (consistent with every type) for data
//! whose shape is only known at run time.
//!
//! It runs on the AST before lowering and never fails as a function: [`check`] returns the type
//! of the program plus every diagnostic found (several independent errors per run; after an
//! error the offending expression gets type `Dyn` so one mistake is reported once).
//! Where Nix code is valid but not typable in plain HM (heterogeneous lists, `if` branches of
//! different types, `==` against `null`) the checker falls back to `Dyn` instead of rejecting it.
//! Undefined variables are reported by the evaluator's lowering, not here (they get `Dyn`).

pub(crate) mod aliases;
pub mod builtins;
pub mod imports;
mod infer;
pub mod ty;

pub use imports::{ImportTarget, Imports, NoImports};
pub use infer::{
    check, check_program, check_with, did_you_mean, CheckOptions, CheckResult, TypeEnv,
};
pub use ty::{parse_type, Field, Type};

#[cfg(test)]
mod tests {
    use crate::{parse, SourceMap};

    fn ty(src: &str) -> Result<String, Vec<&'static str>> {
        let mut sm = SourceMap::new();
        let f = sm.add("t", src);
        let p = parse(f, src);
        let e = p.expr.ok_or_else(Vec::new)?;
        let r = super::check(&e);
        if r.diagnostics.is_empty() {
            Ok(r.ty.to_string())
        } else {
            Err(r.diagnostics.iter().map(|d| d.code).collect())
        }
    }

    /// An attribute path 100,000 keys long nests record types as deep: checking it (on a test
    /// thread's 2 MiB stack) must neither overflow nor print an unbounded type.
    #[test]
    fn deep_attribute_paths_are_stack_safe() {
        let path = vec!["a"; 100_000].join(".");
        let t = ty(&format!("{{ {path} = 1; }}")).expect("a record");
        assert!(t.starts_with("{ a : { a : "), "{t}");
        assert!(
            t.len() < 2_000,
            "the printed type is elided: {} bytes",
            t.len()
        );
        assert!(ty(&format!("let {path} = 1; in a")).is_ok());
    }

    #[test]
    fn infers_common_shapes() {
        assert_eq!(ty("x: x").as_deref(), Ok("a -> a"));
        assert_eq!(
            ty("{ a, b ? 1, ... }: a + b").as_deref(),
            Ok("{ a : Int, b ? Int, .. } -> Int")
        );
        assert_eq!(ty("p: p.name").as_deref(), Ok("{ name : a, .. } -> a"));
        assert_eq!(
            ty("let id = x: x; in [ (id 1) (id 2) ]").as_deref(),
            Ok("[Int]")
        );
        assert_eq!(ty("builtins.fromJSON \"1\"").as_deref(), Ok("Dyn"));
    }

    #[test]
    fn rejects_classic_mistakes() {
        assert_eq!(
            ty("{ name = 1; }.nmae"),
            Err(vec!["buildit::type::missing-field"])
        );
        assert_eq!(ty("1 + \"a\""), Err(vec!["buildit::type::mismatch"]));
        assert_eq!(
            ty("({ a }: a) { }"),
            Err(vec!["buildit::type::missing-field"])
        );
        assert_eq!(
            ty("({ a }: a) { a = 1; b = 2; }"),
            Err(vec!["buildit::type::unexpected-field"])
        );
        assert_eq!(ty("1 2"), Err(vec!["buildit::type::not-a-function"]));
        assert_eq!(
            ty("if 1 then 2 else 3"),
            Err(vec!["buildit::type::mismatch"])
        );
        assert_eq!(ty("x: x x"), Err(vec!["buildit::type::infinite-type"]));
    }

    #[test]
    fn record_defaults_do_not_close_the_field() {
        assert_eq!(
            ty("args: let o = args.options or { }; in o.ipv6 or false").as_deref(),
            Ok("{ options ? { ipv6 ? Bool, .. }, .. } -> Bool")
        );
        assert_eq!(
            ty("let f = c: (c.env or { }).A or \"\"; in f { env = { A = \"1\"; B = \"2\"; }; }")
                .as_deref(),
            Ok("String")
        );
        assert_eq!(
            ty("c: s: if c then s else { }").as_deref(),
            Ok("Bool -> { .. } -> { .. }")
        );
        assert_eq!(
            ty("(builtins.foldl' (acc: n: acc // { ${n} = 1; }) { } [ \"a\" ]).a").as_deref(),
            Ok("Int")
        );
        // elsewhere `{ }` is the closed empty record
        assert_eq!(ty("({ }).a"), Err(vec!["buildit::type::missing-field"]));
        assert_eq!(
            ty("({ a }: a) { }"),
            Err(vec!["buildit::type::missing-field"])
        );
    }

    #[test]
    fn type_syntax_round_trips() {
        for s in [
            "Int -> Int",
            "{ a : Int, b ? String, .. }",
            "{ _ : [a] }",
            "(a -> b) -> [a] -> [b]",
        ] {
            let t = super::parse_type(s).map(|t| t.to_string());
            assert_eq!(t.as_deref(), Ok(s));
        }
    }
}
