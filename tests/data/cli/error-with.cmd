eval
-E
with builtins; map
