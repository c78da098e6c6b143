"""The pool's reservation on PostgreSQL as one server-side function (installed at the time; accounts/pool/pg.py now installs a versioned copy from accounts/pool/sql/).

Before, the reservation was a transaction of four round trips (BEGIN, choose and lock, check and take,
COMMIT) driven from Python; as a function it is one autocommit statement. The rules are unchanged and
stay those of accounts/pool.py (the ORM reference that SQLite runs):

1. choose and lock the best eligible account by the counts of this statement's snapshot (a ranking
   only), ``FOR UPDATE OF a SKIP LOCKED LIMIT 1``, so concurrent reservations take different accounts;
2. check and take, in a new statement: a VOLATILE PL/pgSQL function takes a new snapshot for each
   statement, so this one sees every turn committed by whoever held the lock before (the exactness
   rule). It inserts the turn only if the exact counts allow it, then updates the account.

If step 2 finds the account full after all (the ranking's counts were stale), the account is skipped
and step 1 runs again; if step 1 finds nothing unlocked, it runs once more with a blocking lock (in
rank order, so skipped rows never look "exhausted").

History: the function is now rendered from accounts/pool/sql/reserve_turn.sql under a versioned name
and installed by post_migrate (accounts/pool/README.md). This one, ``kimiproxy_reserve_turn``, stays
for the workers of older releases during a rolling deploy; nothing in the current code calls it.
"""

from django.db import migrations

# The counts are computed once per candidate: OFFSET 0 keeps the planner from copying the LATERAL
# subqueries into both the filter and the sort key. Each count is one index range: (account,
# started_at) and (status, lease_expires_at). The ranking counts at most p_rank_cap turns.
CHOOSE = """
            SELECT a.* INTO chosen FROM accounts_kimiaccount a CROSS JOIN LATERAL (SELECT
                (SELECT count(*) FROM (SELECT 1 FROM accounts_turn t WHERE t.account_id = a.id
                    AND t.status <> 'refunded' AND t.started_at > p_now - a.window_seconds * interval '1 second'
                    LIMIT LEAST(a.turn_limit, p_rank_cap)) counted) AS used,
                (SELECT count(*) FROM accounts_turn t WHERE t.account_id = a.id AND t.status = 'in_flight'
                    AND t.lease_expires_at > p_now) AS live
                OFFSET 0) c
            WHERE (CASE WHEN p_account_ids IS NULL THEN a.source = 'pool' ELSE a.id = ANY(p_account_ids) END)
                AND (p_protocol IS NULL OR a.protocol = p_protocol)
                AND NOT (a.id = ANY(skipped))
                AND a.state NOT IN ('invalid', 'disabled')
                AND (a.cooldown_until IS NULL OR a.cooldown_until <= p_now)
                AND c.used < a.turn_limit AND c.live < a.max_concurrent
            ORDER BY a.turn_limit - c.used DESC, a.last_used_at ASC NULLS FIRST, a.id
            LIMIT 1 FOR UPDATE OF a {skip};"""

CREATE = f"""
CREATE OR REPLACE FUNCTION kimiproxy_reserve_turn(
    p_now timestamptz,
    p_lease_expires_at timestamptz,
    p_request_id text,
    p_account_ids bigint[],
    p_protocol text,
    p_exclude bigint[],
    p_rank_cap integer
) RETURNS TABLE (turn_id bigint, account accounts_kimiaccount)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    chosen accounts_kimiaccount;
    taken bigint;
    skipped bigint[] := coalesce(p_exclude, '{{}}');
    blocking boolean := false;
BEGIN
    LOOP
        IF blocking THEN{CHOOSE.format(skip="")}
        ELSE{CHOOSE.format(skip="SKIP LOCKED")}
        END IF;
        IF NOT FOUND THEN
            IF blocking THEN
                RETURN;  -- nothing eligible: the caller asks the ORM why
            END IF;
            blocking := true;
            CONTINUE;
        END IF;

        taken := NULL;
        INSERT INTO accounts_turn (account_id, started_at, status, lease_expires_at, outcome, request_id)
            SELECT chosen.id, p_now, 'in_flight', p_lease_expires_at, '', p_request_id
            WHERE (SELECT count(*) FROM (SELECT 1 FROM accounts_turn WHERE account_id = chosen.id
                    AND status <> 'refunded' AND started_at > p_now - chosen.window_seconds * interval '1 second'
                    LIMIT chosen.turn_limit) counted) < chosen.turn_limit
                AND (SELECT count(*) FROM accounts_turn WHERE account_id = chosen.id AND status = 'in_flight'
                    AND lease_expires_at > p_now) < chosen.max_concurrent
            RETURNING id INTO taken;
        IF taken IS NULL THEN
            skipped := skipped || chosen.id;  -- full after all: the ranking's counts were stale
            CONTINUE;
        END IF;

        UPDATE accounts_kimiaccount SET last_used_at = p_now, total_turns = total_turns + 1,
                state = 'active', updated_at = p_now
            WHERE id = chosen.id RETURNING * INTO chosen;
        turn_id := taken;
        account := chosen;
        RETURN NEXT;
        RETURN;
    END LOOP;
END;
$$;
"""

DROP = "DROP FUNCTION IF EXISTS kimiproxy_reserve_turn(timestamptz, timestamptz, text, bigint[], text, bigint[], integer);"


def _on_postgresql(sql: str):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_drop_indexes_covered_by_composites"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP), elidable=False),
    ]
