eval
-A
packages.nope
sample.bld
