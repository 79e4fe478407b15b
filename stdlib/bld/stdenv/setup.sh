# buildit's generic builder: runs the phases of stdenv.mkPackage in order (bash, in the sandbox).
# Every phase can be replaced by the derivation attribute <phase>Phase (a shell snippet);
# preX/postX attributes run around phase X. Each phase starts with a banner line in the log:
#   ::: buildit phase <name>
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
for phase in ${phases:-unpack patch configure build check install fixup}; do
    run_phase "$phase"
done
