-- pg_temp.catalog_fingerprint(): one line per property of every object the easymo extension
-- owns - members, columns (by name: an upgrade appends columns), defaults, constraints,
-- indexes, triggers, policies, function signatures, bodies, settings and privileges, view
-- definitions, comments, pg_dump registrations. Two databases with equal fingerprints have the
-- same extension. Monthly partitions are left out: which exist depends on the data.
\set ON_ERROR_STOP 1
CREATE FUNCTION pg_temp.catalog_fingerprint() RETURNS SETOF text
LANGUAGE sql AS $$
WITH ext AS (SELECT oid, extconfig FROM pg_extension WHERE extname = 'easymo'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
       AND NOT (d.classid = 'pg_class'::regclass
                AND (SELECT relname FROM pg_class WHERE oid = d.objid) ~ '_p[0-9]{4}_[0-9]{2}$')
), rels AS (
    SELECT c.* FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
), procs AS (
    SELECT p.* FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
)
SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM members
UNION ALL
SELECT format('relation %s kind=%s rls=%s force=%s options=%s acl=%s comment=%s',
              c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.reloptions, c.relacl,
              md5(coalesce(obj_description(c.oid, 'pg_class'), '')))
  FROM rels c
UNION ALL
SELECT format('column %s.%s %s notnull=%s default=%s generated=%s collation=%s comment=%s',
              c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
              -- (a generated column's expression on one line: the fingerprint is a line each)
              regexp_replace(pg_get_expr(ad.adbin, ad.adrelid), '\s+', ' ', 'g'), a.attgenerated, a.attcollation,
              md5(coalesce(col_description(c.oid, a.attnum), '')))
  FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
UNION ALL
SELECT format('constraint %s.%s %s', c.relname, k.conname, pg_get_constraintdef(k.oid))
  FROM rels c JOIN pg_constraint k ON k.conrelid = c.oid
UNION ALL
SELECT format('index %s', regexp_replace(pg_get_indexdef(i.indexrelid), '_p[0-9]{4}_[0-9]{2}', '_pYYYY_MM', 'g'))
  FROM rels c JOIN pg_index i ON i.indrelid = c.oid
UNION ALL
SELECT format('trigger %s', pg_get_triggerdef(t.oid)) FROM rels c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
UNION ALL
SELECT format('policy %s.%s cmd=%s permissive=%s roles=%s using=%s check=%s', c.relname, p.polname, p.polcmd,
              p.polpermissive, (SELECT array_agg(r ORDER BY r) FROM unnest(p.polroles::regrole[]::text[]) r),
              pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
  FROM rels c JOIN pg_policy p ON p.polrelid = c.oid
UNION ALL
SELECT format('view %s %s', c.relname, md5(pg_get_viewdef(c.oid))) FROM rels c WHERE c.relkind IN ('v', 'm')
UNION ALL
SELECT format('function %s(%s) returns %s%s lang=%s volatile=%s parallel=%s strict=%s secdef=%s config=%s acl=%s body=%s comment=%s',
              p.proname, pg_get_function_arguments(p.oid), CASE WHEN p.proretset THEN 'setof ' ELSE '' END,
              pg_get_function_result(p.oid), p.prolang::regproc, p.provolatile, p.proparallel, p.proisstrict,
              p.prosecdef, p.proconfig, p.proacl, md5(p.prosrc), md5(coalesce(obj_description(p.oid, 'pg_proc'), '')))
  FROM procs p
UNION ALL
SELECT 'dumped ' || c.relname FROM ext, unnest(ext.extconfig) x JOIN pg_class c ON c.oid = x
 WHERE c.relname !~ '_p[0-9]{4}_[0-9]{2}$'
$$;
