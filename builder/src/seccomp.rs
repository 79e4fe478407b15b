//! The system-call filter of every sandboxed build (both backends), compiled to classic BPF
//! with `seccompiler`, as Nix does with libseccomp. What it refuses, and why:
//!
//! - setuid/setgid files: `chmod`, `fchmod`, `fchmodat`, `fchmodat2` with `S_ISUID` or
//!   `S_ISGID` in the mode, and creating a file with those bits directly (`open`/`openat` with
//!   `O_CREAT`, `creat`, `mknod`, `mknodat`) fail with `EPERM`. `openat2` (whose mode is behind
//!   a pointer the filter cannot read) fails with `ENOSYS`, so callers fall back to `openat`.
//! - nested user namespaces: `clone` and `unshare` with `CLONE_NEWUSER` fail with `EPERM`, and
//!   `clone3` (flags behind a pointer) with `ENOSYS`, so the C library falls back to `clone`;
//!   unless the derivation asks for them (`requiredSystemFeatures` containing `userns`).
//! - `personality` other than the harmless values Docker's default profile allows (`PER_LINUX`,
//!   `PER_LINUX32`, `UNAME26` and their combination, and the `0xffffffff` query): `EPERM`.
//! - extended attributes and ACLs: the `setxattr` family fails with `ENOTSUP` (store objects
//!   carry none; tools such as `cp -a` treat `ENOTSUP` as "not supported here" and go on).
//! - `io_uring_setup`: `ENOSYS` (its operations would bypass the checks above).
//!
//! The filter checks the architecture first: only x86-64 system calls are accepted (a 32-bit
//! `int 0x80` call kills the process, as `seccompiler` generates it), and the x32 numbers of the
//! filtered calls (`nr | 0x40000000`) are filtered like the x86-64 ones. Everything else is
//! allowed. The three actions are three programs, installed one after the other (the kernel
//! runs all of them; exactly one matches a filtered call).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why the filter could not be compiled (a bug: the rules are fixed).
#[derive(Debug, thiserror::Error)]
#[error("compiling the build's seccomp filter: {0}")]
pub struct SeccompError(String);

/// The x32 system-call bit.
const X32: i64 = 0x4000_0000;

fn nr(n: libc::c_long) -> i64 {
    n
}

fn cond(arg: u8, mask: u64, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(mask),
        value,
    )
    .map_err(|e| SeccompError(e.to_string()))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(conds).map_err(|e| SeccompError(e.to_string()))
}

/// `rules` for each system call and for its x32 number.
fn with_x32(rules: Vec<(i64, Vec<SeccompRule>)>) -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut m = BTreeMap::new();
    for (n, r) in rules {
        m.insert(n | X32, r.clone());
        m.insert(n, r);
    }
    m
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    action: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let f = SeccompFilter::new(rules, SeccompAction::Allow, action, TargetArch::x86_64)
        .map_err(|e| SeccompError(e.to_string()))?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError(e.to_string()))
}

/// The programs of one build (see the module docs), in installation order.
pub fn programs(allow_userns: bool) -> Result<Vec<BpfProgram>, SeccompError> {
    let suid = libc::S_ISUID as u64;
    let sgid = libc::S_ISGID as u64;
    let creat = libc::O_CREAT as u64;
    // One rule per bit: a rule's conditions are all required, the rules are alternatives.
    let mode_bits = |arg: u8| -> Result<Vec<SeccompRule>, SeccompError> {
        Ok(vec![
            rule(vec![cond(arg, suid, suid)?])?,
            rule(vec![cond(arg, sgid, sgid)?])?,
        ])
    };
    let open_bits = |flags: u8, mode: u8| -> Result<Vec<SeccompRule>, SeccompError> {
        Ok(vec![
            rule(vec![cond(flags, creat, creat)?, cond(mode, suid, suid)?])?,
            rule(vec![cond(flags, creat, creat)?, cond(mode, sgid, sgid)?])?,
        ])
    };
    let mut eperm = vec![
        (nr(libc::SYS_chmod), mode_bits(1)?),
        (nr(libc::SYS_fchmod), mode_bits(1)?),
        (nr(libc::SYS_fchmodat), mode_bits(2)?),
        (nr(libc::SYS_fchmodat2), mode_bits(2)?),
        (nr(libc::SYS_creat), mode_bits(1)?),
        (nr(libc::SYS_mknod), mode_bits(1)?),
        (nr(libc::SYS_mknodat), mode_bits(2)?),
        (nr(libc::SYS_open), open_bits(1, 2)?),
        (nr(libc::SYS_openat), open_bits(2, 3)?),
    ];
    // personality: anything but the allowed values.
    let allowed_personalities: [u64; 5] = [0, 0x0008, 0x0020000, 0x0020008, 0xffff_ffff];
    let mut not_allowed = Vec::new();
    for p in allowed_personalities {
        not_allowed.push(
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, p)
                .map_err(|e| SeccompError(e.to_string()))?,
        );
    }
    eperm.push((nr(libc::SYS_personality), vec![rule(not_allowed)?]));
    let newuser = libc::CLONE_NEWUSER as u64;
    let mut enosys = vec![
        (nr(libc::SYS_openat2), vec![]),
        (nr(libc::SYS_io_uring_setup), vec![]),
    ];
    if !allow_userns {
        eperm.push((
            nr(libc::SYS_clone),
            vec![rule(vec![cond(0, newuser, newuser)?])?],
        ));
        eperm.push((
            nr(libc::SYS_unshare),
            vec![rule(vec![cond(0, newuser, newuser)?])?],
        ));
        enosys.push((nr(libc::SYS_clone3), vec![]));
    }
    // setxattrat (463, Linux 6.13) is not in every libc yet.
    let enotsup = vec![
        (nr(libc::SYS_setxattr), vec![]),
        (nr(libc::SYS_lsetxattr), vec![]),
        (nr(libc::SYS_fsetxattr), vec![]),
        (463, vec![]),
    ];
    Ok(vec![
        compile(with_x32(eperm), SeccompAction::Errno(libc::EPERM as u32))?,
        compile(with_x32(enosys), SeccompAction::Errno(libc::ENOSYS as u32))?,
        compile(
            with_x32(enotsup),
            SeccompAction::Errno(libc::EOPNOTSUPP as u32),
        )?,
    ])
}

/// A program as the kernel's `sock_filter` array (for installing it ourselves).
pub fn to_libc(p: &BpfProgram) -> Vec<libc::sock_filter> {
    p.iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect()
}

/// A program as bytes (bubblewrap's `--add-seccomp-fd` reads them from a descriptor).
pub fn to_bytes(p: &BpfProgram) -> Vec<u8> {
    let mut v = Vec::with_capacity(p.len() * 8);
    for i in p {
        v.extend_from_slice(&i.code.to_ne_bytes());
        v.push(i.jt);
        v.push(i.jf);
        v.extend_from_slice(&i.k.to_ne_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_compile_with_and_without_userns() {
        let strict = programs(false).expect("compiles");
        let lax = programs(true).expect("compiles");
        assert_eq!(strict.len(), 3);
        assert!(
            strict[0].len() > lax[0].len(),
            "clone/unshare rules only when strict"
        );
        assert_eq!(to_bytes(&strict[0]).len(), strict[0].len() * 8);
        assert_eq!(to_libc(&strict[2]).len(), strict[2].len());
    }
}
