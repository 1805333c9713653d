"""Pure operator tests. A package so pytest names them `tests.test_operator_*`, not
`operator.tests.*`, which would shadow the standard library `operator` module."""
