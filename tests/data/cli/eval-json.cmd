eval
--json
-E
{ b = [ 1 2.5 "x" null true ]; a = { c = 1; }; }
