eval
-E
1 + 2
