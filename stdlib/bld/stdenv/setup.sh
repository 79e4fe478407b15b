# buildit's generic builder: runs the phases of stdenv.mkPackage in order (bash, in the sandbox).
# Every phase can be replaced by the derivation attribute <phase>Phase (a shell snippet);
# preX/postX attributes run around phase X. Each phase starts with a banner line in the log:
#   ::: buildit phase <name>
# The last phase, `closure`, is the runtime closure check (docs/packages.md): every ELF file
# in $out must find each of its NEEDED libraries in $out, in a store path $out refers to, or
# in a declared Debian runtime package ($debianRuntime); `dontCheckClosure = true` skips it.
set -eo pipefail
shopt -s nullglob

# a sane default environment inside the sandbox
export PATH="${PATH:-/usr/bin:/bin}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}"
export MAKEFLAGS="${MAKEFLAGS:-} -j${BUILDIT_BUILD_CORES:-1}"
export CONFIG_SHELL=/bin/bash
export LANG=C LC_ALL=C TZ=UTC
umask 0022

banner() { echo "::: buildit phase $1"; }

default_unpack() {
    local s
    for s in $src; do
        case "$s" in
            *.tar.gz|*.tgz) tar -xzf "$s" ;;
            *.tar.xz|*.txz) tar -xJf "$s" ;;
            *.tar.bz2|*.tbz2) tar -xjf "$s" ;;
            *.tar.zst) tar --zstd -xf "$s" ;;
            *.tar) tar -xf "$s" ;;
            *)
                if [ -d "$s" ]; then
                    # a source directory from the store: copy, keeping mtimes, make writable
                    cp -r --preserve=timestamps "$s" ./"$(basename "$s" | cut -d- -f2-)"
                else
                    echo "unpack: don't know how to unpack $s" >&2
                    return 1
                fi
                ;;
        esac
    done
    # enter the one top-level directory the sources made
    local dirs=(*/)
    if [ -n "${sourceRoot:-}" ]; then
        cd "$sourceRoot"
    elif [ ${#dirs[@]} -eq 1 ]; then
        cd "${dirs[0]}"
    else
        echo "unpack: expected one top-level directory, found: ${dirs[*]:-none} (set sourceRoot)" >&2
        return 1
    fi
    chmod -R u+w .
}

default_patch() {
    local p
    for p in ${patches:-}; do
        echo "applying patch $p"
        case "$p" in
            *.gz) gzip -dc "$p" | patch -p1 --no-backup-if-mismatch ;;
            *.xz) xz -dc "$p" | patch -p1 --no-backup-if-mismatch ;;
            *) patch -p1 --no-backup-if-mismatch < "$p" ;;
        esac
    done
}

default_configure() {
    if [ -x ./configure ]; then
        # shellcheck disable=SC2086
        ./configure --prefix="$out" ${configureFlags:-}
    else
        echo "no ./configure script; skipping"
    fi
}

default_build() {
    # shellcheck disable=SC2086
    make ${makeFlags:-}
}

default_check() {
    if [ "${doCheck:-}" = 1 ]; then
        # shellcheck disable=SC2086
        make ${checkTarget:-check} ${makeFlags:-}
    else
        echo "checks disabled (doCheck = false)"
    fi
}

default_install() {
    # shellcheck disable=SC2086
    make install ${makeFlags:-} ${installFlags:-}
}

default_fixup() {
    # no libtool archives or static leftovers pointing back at the build directory
    find "$out" -name '*.la' -delete 2>/dev/null || true
    if [ "${dontStrip:-}" != 1 ] && command -v strip >/dev/null; then
        find "$out" -type f -perm -0100 -exec sh -c 'head -c4 "$1" | grep -q ELF && strip --strip-debug "$1" || true' _ {} \;
    fi
}

# the directories a declared Debian runtime package (an unpacked root tree) provides libraries
# from at run time: where the dynamic loader looks by default on Debian (merged /usr)
debian_lib_dirs() {
    local d=$1
    echo "$d/usr/lib/x86_64-linux-gnu" "$d/usr/lib" "$d/usr/lib64"
}

# Debian's usual name for the package of a shared library (policy 8.1): the soname without
# ".so", then its version, with a "-" between when the name ends in a digit
# (libcrypt.so.1 → libcrypt1, libpcre2-8.so.0 → libpcre2-8-0, libgcc_s.so.1 → libgcc-s1)
debian_name() {
    local lib=$1 base ver
    base=${lib%%.so*}
    ver=${lib#*.so}
    ver=${ver#.}
    base=${base//_/-}
    case "$base" in *[0-9]) [ -n "$ver" ] && base="$base-" ;; esac
    echo "${base,,}$ver"
}

is_elf() {
    [ "$(head -c4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]
}

default_closure() {
    if [ "${dontCheckClosure:-}" = 1 ]; then
        echo "runtime closure check disabled (dontCheckClosure = true)"
        return 0
    fi
    if ! command -v readelf >/dev/null; then
        echo "closure check: readelf (binutils) is not in the sysroot" >&2
        return 1
    fi
    # every library file name $out, its referenced store paths and the Debian runtime offer
    local -A provided=() referenced=()
    local f d p
    while IFS= read -r -d '' f; do provided[${f##*/}]="\$out"; done \
        < <(find "$out" \( -type f -o -type l \) -name '*.so*' -print0)
    # the store paths $out refers to: their hash parts appear in its files
    # (nix-base32: no e, o, t, u); each names an input mounted in this sandbox
    local h
    while IFS= read -r h; do
        for p in "/bld/store/$h"-*; do referenced[$p]=1; done
    done < <(grep -rhoa '/bld/store/[0-9a-df-np-sv-z]\{32\}' "$out" 2>/dev/null | cut -c12- | sort -u)
    # provide PROVIDER DIR...: the shared libraries in DIRs are provided by PROVIDER (first wins)
    provide() {
        local p=$1 d f
        shift
        for d in "$@"; do
            [ -d "$d" ] || continue
            while IFS= read -r -d '' f; do
                [ -n "${provided[${f##*/}]:-}" ] || provided[${f##*/}]=$p
            done < <(find "$d" -maxdepth 1 \( -type f -o -type l \) -name '*.so*' -print0)
        done
    }
    for p in "${!referenced[@]}"; do
        [ "$p" = "$out" ] && continue
        provide "$p" "$p/lib" "$p/lib64"
    done
    for p in ${debianRuntime:-}; do
        # shellcheck disable=SC2046 # the directories are words
        provide "$p" $(debian_lib_dirs "$p")
    done
    local checked=0 missing=0 lib first=""
    while IFS= read -r -d '' f; do
        is_elf "$f" || continue
        checked=$((checked + 1))
        while IFS= read -r lib; do
            [ -n "$lib" ] || continue
            if [ -z "${provided[$lib]:-}" ]; then
                missing=$((missing + 1))
                echo "closure check: ${f#"$out"/} needs $lib, which no runtime dependency provides" >&2
                [ -n "$first" ] || first=$(debian_name "$lib")
                if [ -e "/usr/lib/x86_64-linux-gnu/$lib" ]; then
                    echo "  (the build found it in the sysroot, /usr/lib/x86_64-linux-gnu/$lib; its Debian package is probably $(debian_name "$lib"))" >&2
                fi
            fi
        done < <(LC_ALL=C readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
    done < <(find "$out" -type f -print0 | sort -z)
    if [ "$missing" -gt 0 ]; then
        echo "error: runtime closure check failed: $missing NEEDED librar$([ "$missing" = 1 ] && echo y || echo ies) not provided" >&2
        echo "help: declare a runtime dependency that provides each library, e.g." >&2
        echo "  runtimeDeps = [ (debian.package \"$first\" \"\") ];   # a Debian package, laid out at /usr at run time" >&2
        echo "  or link against a buildit package with an rpath into the store (as nginx.bld does for zlib)" >&2
        return 1
    fi
    echo "closure check: $checked ELF file(s), every NEEDED library provided"
}

run_phase() {
    local name=$1 hook
    banner "$name"
    hook="pre${name^}"
    if [ -n "${!hook:-}" ]; then eval "${!hook}"; fi
    local override="${name}Phase"
    if [ -n "${!override:-}" ]; then
        eval "${!override}"
    else
        "default_$name"
    fi
    hook="post${name^}"
    if [ -n "${!hook:-}" ]; then eval "${!hook}"; fi
}

mkdir -p "$out"
for phase in ${phases:-unpack patch configure build check install fixup closure}; do
    run_phase "$phase"
done
