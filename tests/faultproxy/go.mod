module ruleop/tests/faultproxy

go 1.26.0
