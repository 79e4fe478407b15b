eval
-E
{ a = "[31m"; b = [0m; }
