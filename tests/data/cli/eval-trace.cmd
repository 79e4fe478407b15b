eval
-E
builtins.trace "hi" 1
