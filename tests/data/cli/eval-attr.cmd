eval
-A
packages.hello.version
sample.bld
