eval
sample.bld
