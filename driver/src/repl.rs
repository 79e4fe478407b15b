//! The REPL back end: everything `buildit repl` does except terminal IO, so it can be driven
//! line by line by tests (transcripts) as well as by the rustyline front end.
//!
//! Bindings typed at the prompt (`x = 1`) and files loaded with `:l` live in one frame that sits
//! between the global scope and each input; a new binding makes a new frame (old closures keep
//! seeing the old one, as lexical scoping wants).
//!
//! Every input is type-checked before it is evaluated (unless type checking is turned off,
//! `buildit repl --no-typecheck`): a type error is reported as diagnostics and nothing is
//! evaluated or bound. The REPL remembers the inferred type of each of its variables (a
//! binding's, or the field types of a file loaded with `:l`), so `:t`, later inputs and the
//! completion of attribute paths see them; a variable whose type is unknown is `Dyn`. Imports
//! are typed through a [`TypeCheck`] kept for the REPL's life: `import <buildit>` has the typed
//! standard library's type and `import ./f.bld` the file's, so `:t` shows them.
//!
//! `:doc NAME` shows a builtin's documentation, or a standard library name's type and the `#`
//! comment block above its definition in the library's source.
//!
//! `:b EXPR` builds the derivations `EXPR` evaluates to (as `buildit realise` does) in the
//! session given with [`Repl::set_session`] (whose store the evaluator writes `.drv` files
//! into), reporting progress in plain lines (to [`Repl::set_progress`] as they happen, else in
//! the reply) and replying with the output paths, one a line; a failed build is an error
//! diagnostic.
//!
//! Errors become text through the front end's [`Render`] (colours, Unicode, traces are its
//! business); the REPL keeps going after them, so they are rendered where they happen, against
//! the evaluator's sources of that moment.

use crate::error::DriverError;
use crate::session::Session;
use crate::typecheck::TypeCheck;
use buildit_eval::value::{Env, Pending, Scope, Thunk};
use buildit_eval::EvalError;
use buildit_eval::{print, EvalIo, Evaluator, Symbol, Value};
use buildit_lang::ast::{AttrKey, Binding, Expr, ExprKind};
use buildit_lang::text::plural;
use buildit_lang::types::{Type, TypeEnv};
use buildit_lang::Diagnostic;
use buildit_lang::SourceMap;

/// What the front end should do after a line.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// Text to show (may be empty); ends with a newline when non-empty.
    pub text: String,
    /// Whether the output is an error.
    pub is_error: bool,
    pub quit: bool,
}

impl Reply {
    fn ok(text: impl Into<String>) -> Reply {
        let mut text = text.into();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        Reply {
            text,
            is_error: false,
            quit: false,
        }
    }

    fn err(text: impl Into<String>) -> Reply {
        Reply {
            is_error: true,
            ..Reply::ok(text)
        }
    }
}

const HELP: &str = "\
The following commands are available:

  <expr>        Evaluate and print an expression
  <x> = <expr>  Bind an expression to a name for later inputs
  :p <expr>     Evaluate and print an expression fully (deeply)
  :l <path>     Load the attributes of a .bld file's set into scope
  :doc <name>   Show the documentation of a builtin (`:doc map`) or of a name of the
                standard library, with its type (`:doc stdenv.mkPackage`)
  :t <expr>     Show the inferred type of an expression (without evaluating it)
  :b <expr>     Build the derivation(s) an expression evaluates to; print the output paths
  :q            Exit
  :?            Show this help
";

/// Appended to the type errors of an input that was therefore not evaluated.
const NOT_EVALUATED: &str =
    "(nothing was evaluated; `buildit repl --no-typecheck` turns type checking off)\n";

/// How the REPL turns errors into text: the front end's renderer.
pub trait Render {
    /// Diagnostics (syntax, names, types) against `sources`.
    fn diagnostics(&self, sources: &SourceMap, diagnostics: &[Diagnostic]) -> String;
    /// An evaluation error against `sources`.
    fn eval_error(&self, sources: &SourceMap, error: &EvalError) -> String;
    /// Any other error of the driver.
    fn error(&self, error: &DriverError) -> String;
}

pub struct Repl {
    ev: Evaluator,
    names: Vec<Symbol>,
    /// The static type of each of `names` (same order; `Dyn` when unknown).
    types: Vec<Type>,
    env: Env,
    cwd: String,
    render: Box<dyn Render>,
    typecheck: bool,
    /// Where `:b` builds (`None`: `:b` is not available).
    session: Option<Session>,
    /// Where `:b` sends its progress lines as they happen (`None`: into the reply).
    progress: Option<ProgressFn>,
    /// The checker of inputs and `:l`oaded files: imports typed (`<buildit>` from the typed
    /// standard library), interfaces cached for the REPL's life.
    checker: std::cell::RefCell<TypeCheck>,
}

/// Receives `:b`'s progress lines.
pub type ProgressFn = Box<dyn FnMut(&str)>;

/// The outcome of type-checking one REPL input.
enum Checked {
    /// Well-typed (or not checked): the type, `Dyn` when unknown.
    Ok(Type),
    /// Rendered type errors.
    Err(String),
    /// Rendered syntax errors (evaluation reports them itself).
    Syntax(String),
}

impl Repl {
    /// A REPL whose relative paths resolve against `cwd`, rendering errors with `render`.
    pub fn new(io: Box<dyn EvalIo>, cwd: impl Into<String>, render: Box<dyn Render>) -> Repl {
        Repl {
            ev: Evaluator::new(io),
            names: Vec::new(),
            types: Vec::new(),
            env: Scope::new(None, Default::default()),
            cwd: cwd.into(),
            render,
            typecheck: true,
            session: None,
            progress: None,
            checker: std::cell::RefCell::new(TypeCheck::new(false)),
        }
    }

    /// Let `:b` build in this session's store (the one the evaluator's IO writes derivations
    /// into), with its Debian lock and builtin builders.
    pub fn set_session(&mut self, session: Session) {
        self.session = Some(session);
    }

    /// Show `:b`'s progress lines (without newline) through `f` as they happen, instead of in
    /// the reply.
    pub fn set_progress(&mut self, f: ProgressFn) {
        self.progress = Some(f);
    }

    /// Turn type checking of inputs on (the default) or off (`--no-typecheck`).
    pub fn set_typecheck(&mut self, on: bool) {
        self.typecheck = on;
    }

    /// The type environment of an input: the globals plus the REPL's variables.
    fn type_env(&self) -> TypeEnv {
        let mut env = TypeEnv::new();
        for (n, t) in self.names.iter().zip(&self.types) {
            env.insert(n.as_str(), t.clone());
        }
        env
    }

    /// Parse `text` and type-check it, with `wrap` applied to the parsed expression first (a
    /// binding checks `let x = e; in x`). Syntax errors are reported too.
    /// Imports are typed: `import <buildit>` has the standard library's type, `import ./f.bld`
    /// the file's (relative to the REPL's directory).
    fn check_input(&self, text: &str, wrap: impl FnOnce(Expr) -> Expr) -> Checked {
        let mut checker = self.checker.borrow_mut();
        let file = checker.begin_source("«repl»", &self.cwd, text);
        let parsed = buildit_lang::parse(file, text);
        let ok = parsed.syntax_ok();
        let Some(expr) = parsed.expr.filter(|_| ok) else {
            return Checked::Syntax(
                self.render
                    .diagnostics(checker.sources(), &parsed.diagnostics),
            );
        };
        let r = checker.check_expr(&wrap(expr), &self.type_env());
        let mut diags = parsed.diagnostics;
        diags.extend(r.diagnostics);
        if diags.is_empty() {
            Checked::Ok(r.ty)
        } else {
            Checked::Err(self.render.diagnostics(checker.sources(), &diags))
        }
    }

    /// Whether `input` is an unfinished expression (the front end then reads another line).
    pub fn is_incomplete(input: &str) -> bool {
        let t = input.trim();
        if t.starts_with(':') || t.is_empty() {
            return false;
        }
        let body = split_binding(t).map(|(_, e)| e).unwrap_or(t);
        let parsed = buildit_lang::parse(buildit_lang::FileId(0), body);
        parsed.diagnostics.iter().any(|d| {
            d.code == "buildit::parse::unexpected-eof"
                || d.code == "buildit::parse::unterminated-string"
        })
    }

    /// Handle one (possibly multi-line) input.
    pub fn handle(&mut self, input: &str) -> Reply {
        let t = input.trim();
        if t.is_empty() {
            return Reply::ok("");
        }
        if let Some(cmd) = t.strip_prefix(':') {
            let (name, arg) = match cmd.find(char::is_whitespace) {
                Some(i) => (&cmd[..i], cmd[i..].trim()),
                None => (cmd, ""),
            };
            return match name {
                "q" | "quit" => Reply {
                    text: String::new(),
                    is_error: false,
                    quit: true,
                },
                "?" | "help" => Reply::ok(HELP),
                "p" | "print" => self.eval_print(arg, true),
                "l" | "load" => self.load(arg),
                "doc" => self.doc(arg),
                "t" | "type" => self.type_of(arg),
                "b" | "build" => self.build(arg),
                _ => Reply::err(format!("unknown command ':{name}' (type :? for help)")),
            };
        }
        if let Some((name, expr)) = split_binding(t) {
            return self.bind(name, expr);
        }
        self.eval_print(t, false)
    }

    /// Type-check `text` (unless checking is off), then evaluate it; the error reply when
    /// either fails.
    fn check_and_eval(&mut self, text: &str) -> Result<Value, Reply> {
        if self.typecheck {
            if let Checked::Err(e) = self.check_input(text, |e| e) {
                return Err(Reply::err(e + NOT_EVALUATED));
            }
        }
        self.compile_eval(text).map_err(Reply::err)
    }

    fn compile_eval(&mut self, text: &str) -> Result<Value, String> {
        let frames = vec![self.names.clone()];
        let ir = match self.ev.compile_in_scope("«repl»", text, &self.cwd, &frames) {
            Ok(ir) => ir,
            Err(diags) => return Err(self.render.diagnostics(&self.ev.sources, &diags)),
        };
        let env = self.env.clone();
        self.ev
            .eval_in(&ir, &env)
            .map_err(|e| self.render.eval_error(&self.ev.sources, &e))
    }

    fn eval_print(&mut self, text: &str, deep: bool) -> Reply {
        if text.is_empty() {
            return Reply::err("expected an expression");
        }
        let v = match self.check_and_eval(text) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let printed = if deep {
            print::print_value(&mut self.ev, &v)
        } else {
            self.print_shallow(&v)
        };
        match printed {
            Ok(s) => Reply::ok(s),
            Err(e) => Reply::err(self.render.eval_error(&self.ev.sources, &e)),
        }
    }

    /// Force the top value and its direct children (errors show inline), print nested
    /// structure as `{ … }` / `[ … ]`.
    fn print_shallow(&mut self, v: &Value) -> Result<String, buildit_eval::EvalError> {
        match v {
            Value::Attrs(a) => {
                for (_, x) in a.iter() {
                    let _ = self.ev.force(x);
                }
            }
            Value::List(l) => {
                for x in l.iter() {
                    let _ = self.ev.force(x);
                }
            }
            _ => {}
        }
        Ok(print::print_shallow(v))
    }

    fn bind(&mut self, name: &str, expr: &str) -> Reply {
        // the new name is in scope of its own definition (recursive functions work): checked
        // as `let name = expr; in name`
        let ty = if self.typecheck {
            match self.check_input(expr, |e| let_in_self(name, e)) {
                Checked::Ok(t) => t,
                Checked::Err(e) => return Reply::err(e + NOT_EVALUATED),
                Checked::Syntax(_) => Type::Dyn, // reported by compiling it below
            }
        } else {
            Type::Dyn
        };
        let sym = Symbol::intern(name);
        let mut names = self.names.clone();
        let mut slots: Vec<Value> = self.env.slots.borrow().iter().cloned().collect();
        let index = match names.iter().position(|n| *n == sym) {
            Some(i) => i,
            None => {
                names.push(sym);
                slots.push(Value::Null);
                names.len() - 1
            }
        };
        let ir =
            match self
                .ev
                .compile_in_scope("«repl»", expr, &self.cwd, std::slice::from_ref(&names))
            {
                Ok(ir) => ir,
                Err(diags) => return Reply::err(self.render.diagnostics(&self.ev.sources, &diags)),
            };
        let env = Scope::new(None, slots.into_iter().collect());
        let value = Value::Thunk(Thunk::new(Pending::Expr(ir, env.clone())));
        env.slots.borrow_mut()[index] = value;
        self.types.resize(names.len(), Type::Dyn);
        self.types[index] = ty;
        self.names = names;
        self.env = env;
        Reply::ok("")
    }

    fn add_bindings(&mut self, new: Vec<(Symbol, Value, Type)>) {
        let mut slots: Vec<Value> = self.env.slots.borrow().iter().cloned().collect();
        for (name, value, ty) in new {
            match self.names.iter().position(|n| *n == name) {
                Some(i) => {
                    slots[i] = value;
                    self.types[i] = ty;
                }
                None => {
                    self.names.push(name);
                    self.types.push(ty);
                    slots.push(value);
                }
            }
        }
        self.env = Scope::new(None, slots.into_iter().collect());
    }

    fn load(&mut self, path: &str) -> Reply {
        if path.is_empty() {
            return Reply::err("usage: :l <path>");
        }
        let abs = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{}", self.cwd, path)
        };
        // the file's fields get the types of its record type (`Dyn` when not checked)
        let file_ty = if self.typecheck {
            match self.check_file(&abs) {
                Checked::Ok(t) => t,
                Checked::Syntax(_) => Type::Dyn,
                Checked::Err(e) => return Reply::err(e + NOT_EVALUATED),
            }
        } else {
            Type::Dyn
        };
        let v = match self.ev.import(&abs, buildit_lang::Span::default()) {
            Ok(v) => v,
            Err(e) => return Reply::err(self.render.eval_error(&self.ev.sources, &e)),
        };
        match v {
            Value::Attrs(a) => {
                let n = a.len();
                let entries: Vec<(Symbol, Value, Type)> = a
                    .iter_sorted()
                    .into_iter()
                    .map(|(k, v)| (*k, v.clone(), field_type(&file_ty, k.as_str())))
                    .collect();
                self.add_bindings(entries);
                Reply::ok(format!("Added {}.", plural(n, "variable", "variables")))
            }
            other => Reply::err(format!(
                "cannot load '{path}': it evaluates to {}, not a set",
                other.describe()
            )),
        }
    }

    /// `:b EXPR`: evaluate, find the derivations, realise them, reply with the output paths.
    fn build(&mut self, text: &str) -> Reply {
        use buildit_builder::{BuildEvent, ScheduleOptions};
        if text.is_empty() {
            return Reply::err("usage: :b <expr>");
        }
        let Some(session) = self.session.clone() else {
            let e = DriverError::request(
                "buildit::repl::no-store",
                "this REPL has no store to build in",
                "start `buildit repl` with a store (`--store-root DIR`)",
            );
            return Reply::err(self.render.error(&e));
        };
        let v = match self.check_and_eval(text) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let found = match buildit_eval::find_derivations(&mut self.ev, &v) {
            Ok(f) => f,
            Err(e) => return Reply::err(self.render.eval_error(&self.ev.sources, &e)),
        };
        if found.is_empty() {
            let e = DriverError::request(
                "buildit::repl::no-derivation",
                format!(
                    "the expression evaluates to {}, which contains no derivation",
                    v.describe()
                ),
                "`:b` builds a derivation (a call of `derivation`) or a list or set of them",
            );
            return Reply::err(self.render.error(&e));
        }
        let targets = match crate::build::targets_of(found) {
            Ok(t) => t,
            Err(e) => return Reply::err(self.render.error(&e)),
        };
        let store = match session.open_store() {
            Ok(s) => s,
            Err(e) => return Reply::err(self.render.error(&e)),
        };
        let mut lines = String::new();
        let mut progress = self.progress.take();
        let (mut total, mut done) = (0usize, 0usize);
        let mut emit = |l: String| match progress.as_mut() {
            Some(f) => f(&l),
            None => {
                lines.push_str(&l);
                lines.push('\n');
            }
        };
        let r = crate::build::realise(
            &store,
            &targets,
            ScheduleOptions::default(),
            session.builtins(),
            None,
            &mut |e| match e {
                BuildEvent::Planned { builds, .. } => total = builds,
                BuildEvent::Started { drv, .. } => emit(format!("building '{drv}'")),
                BuildEvent::Finished { name, .. } => {
                    done += 1;
                    emit(format!("built {name} [{done}/{total}]"));
                }
                BuildEvent::Failed { drv, reason, .. } => {
                    emit(format!("error: build of '{drv}' failed: {reason}"))
                }
                BuildEvent::Substituted { path } => emit(format!("substituted '{path}'")),
                BuildEvent::LogLine { .. }
                | BuildEvent::Download { .. }
                | BuildEvent::Looked { .. }
                | BuildEvent::Fetching { .. } => {}
            },
        );
        self.progress = progress;
        match r {
            Ok(paths) => {
                for p in paths {
                    lines.push_str(&format!("{p}\n"));
                }
                Reply::ok(lines)
            }
            Err(e) => {
                lines.push_str(&self.render.error(&e));
                Reply::err(lines)
            }
        }
    }

    /// `:t EXPR`: the static type, without evaluating (REPL variables have the types
    /// inferred when they were bound or loaded).
    fn type_of(&mut self, text: &str) -> Reply {
        if text.is_empty() {
            return Reply::err("usage: :t <expr>");
        }
        match self.check_input(text, |e| e) {
            Checked::Ok(t) => Reply::ok(format!("{t}\n")),
            Checked::Err(e) | Checked::Syntax(e) => Reply::err(e),
        }
    }

    /// Type-check a file for `:l` (a directory means its `default.bld`); a file that cannot be
    /// read is left to the evaluator to report.
    fn check_file(&self, abs: &str) -> Checked {
        let path = if std::path::Path::new(abs).is_dir() {
            format!("{abs}/default.bld")
        } else {
            abs.to_string()
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Checked::Ok(Type::Dyn);
        };
        // the file's own type errors (its imports typed); syntax and scope errors are the
        // evaluator's to report, and the imported files' come when they are evaluated
        let c = self.checker.borrow_mut().check_root(&path, &text);
        let diags: Vec<Diagnostic> = c
            .diagnostics
            .into_iter()
            .take(c.root_diagnostics)
            .filter(|d| d.code.starts_with("buildit::type::"))
            .collect();
        if diags.is_empty() {
            Checked::Ok(c.root_type)
        } else {
            Checked::Err(self.render.diagnostics(&c.sources, &diags))
        }
    }

    /// `:doc NAME`: a builtin's documentation, else a standard library name's (`stdenv.mkPackage`,
    /// `pkgs.byAtom`, also written `buildit.…` or `(import <buildit>).…`): its type and the
    /// comment block that documents it ([`stdlib_doc`]).
    fn doc(&mut self, name: &str) -> Reply {
        if let Some((n, arity, doc)) = buildit_eval::builtins::doc(name) {
            return Reply::ok(format!(
                "builtins.{n} (takes {arity} argument{})\n  {doc}",
                if arity == 1 { "" } else { "s" }
            ));
        }
        let path = stdlib_path(name);
        let doc = (!path.is_empty()).then(|| stdlib_doc(&path)).flatten();
        let Some(doc) = doc else {
            return Reply::err(format!(
                "'{name}' is neither a builtin nor a name of the standard library (try :doc map or :doc stdenv.mkPackage)"
            ));
        };
        let shown = path.join(".");
        let ty = match self.check_input(&format!("(import <buildit>).{shown}"), |e| e) {
            Checked::Ok(t) => t.to_string(),
            Checked::Err(_) | Checked::Syntax(_) => Type::Dyn.to_string(),
        };
        let mut out = format!("<buildit>.{shown} :: {ty}\n");
        for line in doc {
            out.push_str(format!("  {line}").trim_end());
            out.push('\n');
        }
        Reply::ok(out)
    }

    /// Completion candidates for the word ending at `pos`: the start of the replaced text and
    /// the candidates (names in scope, or attribute names after `a.b.`).
    pub fn complete(&mut self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let upto = line.get(..pos).unwrap_or(line);
        let start = upto
            .rfind(|c: char| !(c.is_alphanumeric() || "_'-.".contains(c)))
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &upto[start..];
        if let Some(cmd) = word.strip_prefix(':') {
            let cmds = [":p", ":l", ":doc", ":t", ":b", ":q", ":?"];
            let _ = cmd;
            return (
                start,
                cmds.iter()
                    .filter(|c| c.starts_with(word))
                    .map(|c| c.to_string())
                    .collect(),
            );
        }
        if let Some(dot) = word.rfind('.') {
            let (base, prefix) = (&word[..dot], &word[dot + 1..]);
            // the value's attributes when it evaluates to a set; else (an error, a value that
            // is not a set yet, say `(throw "x" :: { a : Int })`) the fields of its type
            let names: Vec<String> = match self.compile_eval(base) {
                Ok(Value::Attrs(a)) => a
                    .iter_sorted()
                    .into_iter()
                    .map(|(k, _)| k.as_str().to_string())
                    .collect(),
                _ => match self.check_input(base, |e| e) {
                    Checked::Ok(Type::Record { fields, .. }) => {
                        fields.into_iter().map(|f| f.name).collect()
                    }
                    _ => Vec::new(),
                },
            };
            let mut out: Vec<String> = names
                .into_iter()
                .filter(|k| k.starts_with(prefix))
                .map(|k| format!("{base}.{k}"))
                .collect();
            out.sort();
            return (start, out);
        }
        let mut out: Vec<String> = self
            .names
            .iter()
            .map(|s| s.as_str())
            .chain(self.ev.globals().keys().map(|s| s.as_str()))
            .filter(|n| n.starts_with(word) && (!n.starts_with("__") || word.starts_with("__")))
            .map(String::from)
            .collect();
        for kw in [
            "if", "then", "else", "let", "in", "rec", "inherit", "assert",
        ] {
            if kw.starts_with(word) && !word.is_empty() {
                out.push(kw.to_string());
            }
        }
        out.sort();
        out.dedup();
        (start, out)
    }
}

/// The attribute path a `:doc` argument names in the standard library: `stdenv.mkPackage`,
/// `buildit.stdenv.mkPackage`, `<buildit>.stdenv.mkPackage` or `(import <buildit>).stdenv.mkPackage`
/// (empty when it is not a plain path).
fn stdlib_path(name: &str) -> Vec<&str> {
    let n = name.trim();
    let n = ["(import <buildit>).", "<buildit>.", "buildit."]
        .iter()
        .find_map(|p| n.strip_prefix(p))
        .unwrap_or(n);
    let parts: Vec<&str> = n.split('.').collect();
    let plain = |p: &&str| {
        p.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_'-".contains(c))
    };
    if parts.iter().all(plain) {
        parts
    } else {
        Vec::new()
    }
}

/// The documentation of a standard library name, found in the library's source: starting at
/// `<buildit>`'s `default.bld`, each name of the path is the first binding of it in the current
/// file (`name = …` or `name :: T = …` at the start of a line), and a binding that imports a
/// library file (`import ./stdenv …`) leads into that file. The documentation is the block of
/// `#` comment lines directly above the last name's binding; without one, the leading comment
/// block of the file the binding imports, else of the file it is in when that block mentions
/// the name. `None` when the path leads nowhere.
fn stdlib_doc(path: &[&str]) -> Option<Vec<String>> {
    let mut file = "default.bld".to_string();
    for (i, name) in path.iter().enumerate() {
        let text = stdlib_text(&file)?;
        let lines: Vec<&str> = text.lines().collect();
        let at = lines.iter().position(|l| defines(l, name))?;
        let imported = import_of(&file, lines[at]);
        if i + 1 < path.len() {
            file = imported?;
            continue;
        }
        let above = comment_block(&lines[..at]);
        if !above.is_empty() {
            return Some(above);
        }
        if let Some(header) = imported
            .and_then(|f| stdlib_text(&f))
            .map(comment_block_at_start)
            .filter(|h| !h.is_empty())
        {
            return Some(header);
        }
        let header = comment_block_at_start(text);
        if header.iter().any(|l| l.contains(name)) {
            return Some(header);
        }
        return Some(Vec::new());
    }
    None
}

/// The text of a standard library file (a path inside it, `stdenv/default.bld`).
fn stdlib_text(rel: &str) -> Option<&'static str> {
    buildit_stdlib::embedded::FILES
        .iter()
        .find(|(p, _)| *p == rel)
        .map(|(_, t)| *t)
}

/// Whether `line` starts a binding of `name` (`name = …`, `name :: T = …`).
fn defines(line: &str, name: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix(name) else {
        return false;
    };
    let rest = rest.trim_start();
    rest.starts_with("::") || (rest.starts_with('=') && !rest.starts_with("=="))
}

/// The library file a binding's line imports (`import ./x.bld`, `import ./dir`), relative to
/// `file`'s directory.
fn import_of(file: &str, line: &str) -> Option<String> {
    let at = line.find("import ")?;
    let target = line[at + 7..]
        .trim_start()
        .split(|c: char| c.is_whitespace() || ";(){}".contains(c))
        .next()?;
    if !target.starts_with("./") && !target.starts_with("../") {
        return None;
    }
    let dir = std::path::Path::new(file)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let abs = buildit_eval::lower::canon_path(&format!("/{dir}/{target}"));
    let rel = abs.trim_start_matches('/');
    let is = buildit_stdlib::embedded::is_file;
    if rel.ends_with(".bld") && is(rel) {
        Some(rel.to_string())
    } else if is(&format!("{rel}/default.bld")) {
        Some(format!("{rel}/default.bld"))
    } else {
        None
    }
}

/// The `#` comment lines directly above the end of `lines` (none when a blank or code line is
/// last), without their `#`.
fn comment_block(lines: &[&str]) -> Vec<String> {
    let n = lines
        .iter()
        .rev()
        .take_while(|l| l.trim_start().starts_with('#'))
        .count();
    lines[lines.len() - n..]
        .iter()
        .map(|l| uncomment(l))
        .collect()
}

/// The comment lines a file starts with.
fn comment_block_at_start(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|l| l.trim_start().starts_with('#'))
        .map(uncomment)
        .collect()
}

fn uncomment(line: &str) -> String {
    let t = line.trim_start().trim_start_matches('#');
    t.strip_prefix(' ').unwrap_or(t).trim_end().to_string()
}

/// `let name = e; in name`: how a binding typed at the prompt is checked (spans stay those of
/// `e`).
fn let_in_self(name: &str, e: Expr) -> Expr {
    let span = e.span;
    Expr::new(
        ExprKind::Let {
            bindings: vec![Binding::Attr {
                path: vec![AttrKey::Static(name.to_string(), span)],
                value: e,
                span,
            }],
            aliases: Vec::new(),
            body: Box::new(Expr::new(ExprKind::Var(name.to_string()), span)),
        },
        span,
    )
}

/// The type of field `name` of a record type (`Dyn` when unknown).
fn field_type(t: &Type, name: &str) -> Type {
    match t {
        Type::Record { fields, .. } => fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.ty.clone())
            .unwrap_or(Type::Dyn),
        Type::Dict(e) => (**e).clone(),
        _ => Type::Dyn,
    }
}

/// `name = expr` at the prompt (but not `a == b`).
fn split_binding(t: &str) -> Option<(&str, &str)> {
    let i = t.find('=')?;
    let (name, rest) = (t[..i].trim(), &t[i + 1..]);
    if rest.starts_with('=') || name.is_empty() {
        return None;
    }
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || "_'-".contains(c)) {
        return None;
    }
    Some((name, rest.trim()))
}
