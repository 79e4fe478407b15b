# Make the unpacked toolchain debs usable as /usr: runs with the raw tree (a root with usr/,
# etc/, bin -> usr/bin, …) mounted at /usr, and writes its usr/ part to $out with the links
# Debian's maintainer scripts would have made (update-alternatives, /bin/sh). Absolute links
# into /etc/alternatives become direct relative links.
set -euo pipefail
raw=/usr
cp -a "$raw/usr/." "$out/"
chmod -R u+w "$out"
cd "$out/bin"
link() { # link NAME CANDIDATE…: NAME -> the first candidate that exists
    local name=$1; shift
    [ -e "$name" ] && [ ! -L "$name" ] && return 0
    for c in "$@"; do
        if [ -e "$c" ]; then rm -f "$name"; ln -s "$c" "$name"; return 0; fi
    done
}
# links into /etc/alternatives (dangling here) become direct
for l in *; do
    if [ -L "$l" ]; then
        t=$(readlink "$l")
        case "$t" in /etc/alternatives/*) rm -f "$l" ;; esac
    fi
done
link cc gcc
link c++ g++
link cpp cpp-12
link awk gawk mawk
link sh dash bash
link yacc bison
link pager less cat
link lzma xz
link unlzma unxz
# an executable /usr/bin/sh is required by make and configure scripts
echo "sysroot: $(ls | wc -l) programs in bin/"
