//! The declared type of every builtin, in the language's own type syntax (parsed by
//! [`super::ty::parse_type`]), and the names that are global without `builtins.`.
//!
//! [`GLOBAL_NAMES`] is the one list of global builtins: the evaluator (which depends on this
//! crate) registers its globals from it; an integration test checks that every primop of the
//! evaluator has a type here. Where Nix's behaviour depends on run-time values (JSON, imports,
//! regex captures, `getAttr` with a computed name) the table says `Dyn`. Type variables whose
//! name starts with `num` stand for `Int` or `Float`.

/// Names that are global in Nix besides `builtins.*` (and `__name` for every builtin).
pub const GLOBAL_NAMES: &[&str] = &[
    "abort",
    "baseNameOf",
    "derivation",
    "dirOf",
    "fetchGit",
    "fetchTarball",
    "fromTOML",
    "import",
    "isNull",
    "map",
    "placeholder",
    "removeAttrs",
    "throw",
    "toString",
];

/// `(name, type)` for every builtin and builtin constant.
pub const BUILTIN_TYPES: &[(&str, &str)] = &[
    // core
    ("abort", "String -> a"),
    ("throw", "String -> a"),
    ("tryEval", "a -> { success : Bool, value : Dyn }"),
    ("seq", "a -> b -> b"),
    ("deepSeq", "a -> b -> b"),
    ("typeOf", "a -> String"),
    ("isInt", "a -> Bool"),
    ("isFloat", "a -> Bool"),
    ("isBool", "a -> Bool"),
    ("isString", "a -> Bool"),
    ("isPath", "a -> Bool"),
    ("isNull", "a -> Bool"),
    ("isList", "a -> Bool"),
    ("isAttrs", "a -> Bool"),
    ("isFunction", "a -> Bool"),
    ("toString", "a -> String"),
    ("trace", "a -> b -> b"),
    ("import", "Dyn -> Dyn"),
    ("functionArgs", "a -> { _ : Bool }"),
    ("derivation", "{ name : String, .. } -> Derivation"),
    ("derivationStrict", "{ name : String, .. } -> { drvPath : String, _ : String }"),
    ("toFile", "String -> String -> String"),
    ("storePath", "Dyn -> String"),
    ("path", "{ path : Dyn, name ? String, filter ? (String -> String -> Bool), recursive ? Bool } -> String"),
    ("filterSource", "(String -> String -> Bool) -> Dyn -> String"),
    // fetching pinned trees during evaluation (the argument is a set; `Dyn` so that a bare
    // URL gets the evaluator's explanation of why it needs a pin)
    ("fetchTarball", "Dyn -> String"),
    (
        "fetchGit",
        "Dyn -> { outPath : String, rev : String, shortRev : String, submodules : Bool }",
    ),
    // lists
    ("length", "[a] -> Int"),
    ("head", "[a] -> a"),
    ("tail", "[a] -> [a]"),
    ("elemAt", "[a] -> Int -> a"),
    ("elem", "a -> [b] -> Bool"),
    ("map", "(a -> b) -> [a] -> [b]"),
    ("filter", "(a -> Bool) -> [a] -> [a]"),
    ("foldl'", "(b -> a -> b) -> b -> [a] -> b"),
    ("genList", "(Int -> a) -> Int -> [a]"),
    ("concatLists", "[[a]] -> [a]"),
    ("concatMap", "(a -> [b]) -> [a] -> [b]"),
    ("all", "(a -> Bool) -> [a] -> Bool"),
    ("any", "(a -> Bool) -> [a] -> Bool"),
    ("sort", "(a -> a -> Bool) -> [a] -> [a]"),
    (
        "partition",
        "(a -> Bool) -> [a] -> { right : [a], wrong : [a] }",
    ),
    ("groupBy", "(a -> String) -> [a] -> { _ : [a] }"),
    (
        "listToAttrs",
        "[{ name : String, value : a, .. }] -> { _ : a }",
    ),
    (
        "genericClosure",
        "{ operator : a -> [a], startSet : [a] } -> [a]",
    ),
    // attribute sets
    ("attrNames", "{ _ : a } -> [String]"),
    ("attrValues", "{ _ : a } -> [a]"),
    ("hasAttr", "String -> { .. } -> Bool"),
    ("getAttr", "String -> { .. } -> Dyn"),
    ("removeAttrs", "{ .. } -> [String] -> Dyn"),
    ("intersectAttrs", "{ .. } -> { .. } -> Dyn"),
    ("mapAttrs", "(String -> a -> b) -> { _ : a } -> { _ : b }"),
    ("catAttrs", "String -> [{ .. }] -> [Dyn]"),
    (
        "zipAttrsWith",
        "(String -> [a] -> b) -> [{ _ : a }] -> { _ : b }",
    ),
    // strings
    ("stringLength", "String -> Int"),
    ("substring", "Int -> Int -> String -> String"),
    ("replaceStrings", "[String] -> [String] -> String -> String"),
    ("concatStringsSep", "String -> [String] -> String"),
    ("splitVersion", "String -> [String]"),
    ("compareVersions", "String -> String -> Int"),
    (
        "parseDrvName",
        "String -> { name : String, version : String }",
    ),
    ("getContext", "String -> { _ : Dyn }"),
    ("hasContext", "String -> Bool"),
    ("unsafeDiscardStringContext", "String -> String"),
    ("placeholder", "String -> String"),
    ("match", "String -> String -> Dyn"),
    ("split", "String -> String -> [Dyn]"),
    ("hashString", "String -> String -> String"),
    ("hashFile", "String -> Dyn -> String"),
    // data formats
    ("toJSON", "a -> String"),
    ("fromJSON", "String -> Dyn"),
    ("fromTOML", "String -> Dyn"),
    ("toXML", "a -> String"),
    // files and numbers
    ("readFile", "Dyn -> String"),
    ("pathExists", "Dyn -> Bool"),
    ("readDir", "Dyn -> { _ : String }"),
    ("getEnv", "String -> String"),
    ("baseNameOf", "Dyn -> String"),
    ("dirOf", "a -> a"),
    ("toPath", "Dyn -> String"),
    ("add", "numa -> numb -> Dyn"),
    ("sub", "numa -> numb -> Dyn"),
    ("mul", "numa -> numb -> Dyn"),
    ("div", "numa -> numb -> Dyn"),
    ("lessThan", "a -> b -> Bool"),
    ("bitAnd", "Int -> Int -> Int"),
    ("bitOr", "Int -> Int -> Int"),
    ("bitXor", "Int -> Int -> Int"),
    ("floor", "num -> Int"),
    ("ceil", "num -> Int"),
    // constants
    ("currentSystem", "String"),
    ("storeDir", "String"),
    ("langVersion", "Int"),
    ("nixVersion", "String"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signature_parses() {
        for (name, sig) in BUILTIN_TYPES {
            assert!(super::super::ty::parse_type(sig).is_ok(), "{name}: {sig}");
        }
        for g in GLOBAL_NAMES {
            assert!(BUILTIN_TYPES.iter().any(|(n, _)| n == g), "{g}");
        }
    }
}
