-- The native code's copy of the contract's lists and limits (src/contract.rs), compared with
-- the CHECK constraints and the helpers' checks by tests/pg_regress/sql/contract_values.sql.
COMMENT ON FUNCTION @extschema@._contract_values() IS
    'Internal: the lists (transaction types, currencies, location types, environments, rollout strategies, cache visibilities) and limits the native functions check, one row per value; what the test suite compares with the CHECK constraints.';
