eval
errors.bld
