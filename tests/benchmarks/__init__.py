# A package, so test_backends.py cannot clash with a same-named test module elsewhere under tests/.
