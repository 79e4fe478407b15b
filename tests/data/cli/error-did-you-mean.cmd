eval
-E
{ pname = "x"; }.pnme
