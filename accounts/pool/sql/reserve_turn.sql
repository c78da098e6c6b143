-- The pool's reservation on PostgreSQL as one server-side function (accounts/pool/pg.py calls it).
--
-- The rules are those of accounts/pool/rules.py, which the ORM reference (accounts/pool/orm.py) runs;
-- names in braces are rendered by pg.py from rules.py and accounts/choices.py (never type a state name
-- here). The function's name carries a hash of its rendered text and post_migrate installs it (see
-- accounts/pool/README.md): edit this file and the next `migrate` installs the new version beside the
-- old one. The parity test (tests/postgres/parity/test_reserve_parity.py) fails if this and the ORM
-- disagree.
--
-- Two steps, so that concurrent reservations take different accounts and the counts are exact:
-- 1. choose and lock the best eligible account by the counts of this statement's snapshot (a ranking
--    only), FOR UPDATE OF a SKIP LOCKED LIMIT 1;
-- 2. check and take, in a new statement: a VOLATILE PL/pgSQL function takes a new snapshot for each
--    statement, so this one sees every turn committed by whoever held the lock before (the exactness
--    rule). It inserts the turn only if the exact counts allow it, then updates the account.
-- If step 2 finds the account full after all (the ranking's counts were stale), the account is skipped
-- and step 1 runs again; if step 1 finds nothing unlocked, it runs once more with a blocking lock (in
-- rank order, so skipped rows never look "exhausted").
--
-- Two sections follow, each after a marker line: the choice of step 1 (written once, rendered with and
-- without SKIP LOCKED as {lock}) and the function.

-- <<choose>>
-- The counts are computed once per candidate: OFFSET 0 keeps the planner from copying the LATERAL
-- subqueries into both the filter and the sort key. Each count is one index range: (account,
-- started_at) and (status, lease_expires_at). The ranking counts at most p_rank_cap turns. The limit
-- is rules.effective_limit: the learned one while it holds, else turn_limit (pg.effective_limit_sql).
            SELECT a.* INTO chosen FROM {account_table} a
            CROSS JOIN LATERAL (SELECT {effective_limit_a} AS lim OFFSET 0) l
            CROSS JOIN LATERAL (SELECT
                (SELECT count(*) FROM (SELECT 1 FROM {turn_table} t WHERE t.account_id = a.id
                    AND t.status <> {uncounted_status}
                    AND t.started_at > p_now - a.window_seconds * interval '1 second'
                    LIMIT LEAST(l.lim, p_rank_cap)) counted) AS used,
                (SELECT count(*) FROM {turn_table} t WHERE t.account_id = a.id AND t.status = {live_status}
                    AND t.lease_expires_at > p_now) AS live
                OFFSET 0) c
            WHERE (CASE WHEN p_account_ids IS NULL THEN a.source = {pool_source} ELSE a.id = ANY(p_account_ids) END)
                AND (p_protocol IS NULL OR a.protocol = p_protocol)
                AND NOT (a.id = ANY(skipped))
                AND a.state NOT IN {unusable_states}
                AND (a.cooldown_until IS NULL OR a.cooldown_until <= p_now)
                AND c.used < l.lim AND c.live < a.max_concurrent
            ORDER BY l.lim - c.used DESC, a.last_used_at ASC NULLS FIRST, a.id
            LIMIT 1 FOR UPDATE OF a {lock};

-- <<function>>
CREATE OR REPLACE FUNCTION {function}(
    p_now timestamptz,
    p_lease_expires_at timestamptz,
    p_request_id text,
    p_account_ids bigint[],
    p_protocol text,
    p_exclude bigint[],
    p_rank_cap integer
) RETURNS TABLE (turn_id bigint, account {account_table})
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    chosen {account_table};
    chosen_limit integer;
    taken bigint;
    skipped bigint[] := coalesce(p_exclude, ARRAY[]::bigint[]);
    blocking boolean := false;
BEGIN
    LOOP
        IF blocking THEN
{choose_blocking}
        ELSE
{choose_skip_locked}
        END IF;
        IF NOT FOUND THEN
            IF blocking THEN
                RETURN;  -- nothing eligible: the caller asks the ORM why
            END IF;
            blocking := true;
            CONTINUE;
        END IF;

        taken := NULL;
        chosen_limit := {effective_limit_chosen};
        INSERT INTO {turn_table} (account_id, started_at, status, lease_expires_at, outcome, request_id)
            SELECT chosen.id, p_now, {taken_turn_status}, p_lease_expires_at, {taken_turn_outcome}, p_request_id
            WHERE (SELECT count(*) FROM (SELECT 1 FROM {turn_table} WHERE account_id = chosen.id
                    AND status <> {uncounted_status}
                    AND started_at > p_now - chosen.window_seconds * interval '1 second'
                    LIMIT chosen_limit) counted) < chosen_limit
                AND (SELECT count(*) FROM {turn_table} WHERE account_id = chosen.id AND status = {live_status}
                    AND lease_expires_at > p_now) < chosen.max_concurrent
            RETURNING id INTO taken;
        IF taken IS NULL THEN
            skipped := skipped || chosen.id;  -- full after all: the ranking's counts were stale
            CONTINUE;
        END IF;

        UPDATE {account_table} SET last_used_at = p_now, total_turns = total_turns + 1,
                state = {taken_account_state}, updated_at = p_now
            WHERE id = chosen.id RETURNING * INTO chosen;
        turn_id := taken;
        account := chosen;
        RETURN NEXT;
        RETURN;
    END LOOP;
END;
$$;
