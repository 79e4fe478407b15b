eval
-E
let s = "[2J"; in throw "cleared]0;title" + s
