eval
missing.bld
