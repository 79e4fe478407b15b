eval
-A
packages.helo
sample.bld
