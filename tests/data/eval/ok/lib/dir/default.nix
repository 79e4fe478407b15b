# Imported as a directory: `import ./lib/dir` evaluates this default.nix.
{ fromDefault = true; sibling = import ./other.bld; }
