debian
lock
--source
hello=9.9
--apt-root
../debian-src/apt-root
