"""The test suite, a package so that test modules and tests/fixtures import by their full names (tests.fixtures.*)."""
