eval
--help
