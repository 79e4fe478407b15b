search
--debian
--apt-root
../debian-src/apt-root
lib
