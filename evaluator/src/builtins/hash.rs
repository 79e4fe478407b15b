//! Hashing builtins: `hashString` and `hashFile` with Nix's algorithms (`md5`, `sha1`, `sha256`,
//! `sha512`; lower-case base-16 output, as Nix 2.8 prints them) plus `blake3` as a buildit
//! extension. Also Nix's base-32 encoding (its own alphabet and bit order), used for store-like
//! strings such as `placeholder`.

use super::strings::{arg, force_string_no_ctx};
use crate::error::{ErrorKind, EvalError};
use crate::value::{EvalResult, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp {
            name: "hashString",
            arity: 2,
            func: hash_string,
            doc: "hashString type s: the base-16 hash of s; type is \"md5\", \"sha1\", \"sha256\", \"sha512\" (or \"blake3\", a buildit extension)",
        },
        PrimOp {
            name: "hashFile",
            arity: 2,
            func: hash_file,
            doc: "hashFile type path: the base-16 hash of the file's contents (types as for hashString)",
        },
    ]
}

#[derive(Clone, Copy)]
enum Algo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
    Blake3,
}

fn parse_algo(name: &str, span: Span) -> EvalResult<Algo> {
    Ok(match name {
        "md5" => Algo::Md5,
        "sha1" => Algo::Sha1,
        "sha256" => Algo::Sha256,
        "sha512" => Algo::Sha512,
        "blake3" => Algo::Blake3,
        _ => {
            return Err(EvalError::new(
                ErrorKind::Invalid,
                format!("unknown hash type '{name}'"),
                span,
            )
            .with_help("supported hash types: md5, sha1, sha256, sha512, blake3"))
        }
    })
}

fn digest(algo: Algo, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match algo {
        Algo::Md5 => md5::Md5::digest(data).to_vec(),
        Algo::Sha1 => sha1::Sha1::digest(data).to_vec(),
        Algo::Sha256 => sha2::Sha256::digest(data).to_vec(),
        Algo::Sha512 => sha2::Sha512::digest(data).to_vec(),
        Algo::Blake3 => blake3::hash(data).as_bytes().to_vec(),
    }
}

/// Lower-case base 16.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Nix's base-32 (`printHash32`): alphabet without e, o, u, t; the last byte's bits come first.
pub(crate) fn nix_base32(hash: &[u8]) -> String {
    const CHARS: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";
    if hash.is_empty() {
        return String::new();
    }
    let len = (hash.len() * 8 - 1) / 5 + 1;
    let mut s = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let lo = hash.get(i).map_or(0u16, |x| u16::from(*x) >> j);
        let hi = if i + 1 < hash.len() {
            hash.get(i + 1).map_or(0u16, |x| u16::from(*x) << (8 - j))
        } else {
            0
        };
        let c = ((lo | hi) & 0x1f) as usize;
        s.push(CHARS[c] as char);
    }
    s
}

fn hash_string(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let ty = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let algo = parse_algo(ty.as_str(), span)?;
    // the string's context is discarded, as in Nix
    let s = ev.force_string(&arg(a, 1), span)?;
    Ok(Value::string(hex(&digest(algo, s.as_str().as_bytes()))))
}

fn hash_file(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let ty = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let algo = parse_algo(ty.as_str(), span)?;
    let path = ev.coerce_to_path(&arg(a, 1), span)?;
    super::misc::check_regular_file(ev, &path, span)?;
    let data = ev
        .io()
        .read_file(&path)
        .map_err(|e| EvalError::new(ErrorKind::Io, format!("opening file '{path}': {e}"), span))?;
    Ok(Value::string(hex(&digest(algo, &data))))
}

#[cfg(test)]
mod tests {
    use super::super::strings::test_util::{check, check_err};
    use super::*;

    #[test]
    fn hashes_match_nix() {
        check(&[
            (
                r#"builtins.hashString "md5" "hello""#,
                r#""5d41402abc4b2a76b9719d911017c592""#,
            ),
            (
                r#"builtins.hashString "sha1" "hello""#,
                r#""aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d""#,
            ),
            (
                r#"builtins.hashString "sha256" "hello""#,
                r#""2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824""#,
            ),
            (
                r#"builtins.hashFile "sha256" /t/a.txt"#,
                r#""5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03""#,
            ),
        ]);
        check_err(&[
            (r#"builtins.hashString "sha3" "hello""#, "invalid-value"),
            (r#"builtins.hashFile "sha256" /t/missing"#, "io"),
        ]);
    }

    #[test]
    fn base32_matches_nix() {
        // `nix-hash --type sha256 --to-base32` of the sha256 of ""
        use sha2::Digest;
        let h = sha2::Sha256::digest(b"");
        assert_eq!(
            nix_base32(&h),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        assert_eq!(nix_base32(&[]), "");
    }
}
