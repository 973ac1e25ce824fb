-- Paged listings without OFFSET scans: per-list counters and rank blocks.
-- The design is described in layers/imagerepo/imagerepo/listing.py; in short:
--
-- A *list* is one ordered set of keys (created_at, id), newest first:
--   kind 1 = public images, 2 = all images, 3 = one owner's images,
--   4 = one owner's private images (scope 0 = all groups, else one group id;
--   owner 0 unless kind 3/4), 5 = all groups (scope 0, owner 0).
-- listing_lists holds each list's total (the counter behind `total`).
-- listing_blocks cuts each list, oldest first, into blocks of about BLOCK rows:
-- a block starts at key lo (inclusive) and ends where the next block starts; it
-- knows its row count n and `older`, the number of the list's rows below lo.
-- The row at rank r (from the oldest) is found with one index lookup (the block
-- with the greatest older <= r) and an index scan of at most BLOCK rows inside it.
--
-- Maintenance: statement triggers on images and groups record what changed in
-- listing_pending (one row per statement); a deferred constraint trigger applies
-- it at COMMIT, locking the affected list rows in one global order, so header
-- locks are held only for the few milliseconds before commit and never while
-- the transaction waits for other locks (chunks, blobs).

CREATE INDEX images_all_order_idx ON images (created_at DESC, id DESC);
CREATE INDEX images_group_order_idx ON images (group_id, created_at DESC, id DESC);
CREATE INDEX images_owner_private_idx ON images (owner_id, created_at DESC, id DESC) WHERE is_private;
CREATE INDEX images_group_owner_private_idx ON images (group_id, owner_id, created_at DESC, id DESC)
    WHERE is_private;
CREATE INDEX groups_order_idx ON groups (created_at DESC, id DESC);

CREATE TABLE listing_lists (
    kind  smallint NOT NULL,
    scope bigint   NOT NULL,
    owner bigint   NOT NULL,
    total bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, scope, owner)
);
CREATE INDEX listing_lists_scope_idx ON listing_lists (scope) WHERE scope <> 0;

CREATE TABLE listing_blocks (
    kind  smallint    NOT NULL,
    scope bigint      NOT NULL,
    owner bigint      NOT NULL,
    lo_at timestamptz NOT NULL,
    lo_id bigint      NOT NULL,
    n     integer     NOT NULL,
    older bigint      NOT NULL,
    PRIMARY KEY (kind, scope, owner, lo_at, lo_id)
);
CREATE INDEX listing_blocks_rank_idx ON listing_blocks (kind, scope, owner, older, lo_at, lo_id);

-- Rows live only inside the transaction that wrote them (the flush deletes them).
CREATE TABLE listing_pending (
    id     bigserial PRIMARY KEY,
    kinds  smallint[]    NOT NULL,
    scopes bigint[]      NOT NULL,
    owners bigint[]      NOT NULL,
    ats    timestamptz[] NOT NULL,
    ids    bigint[]      NOT NULL,
    ds     integer[]     NOT NULL
);

-- The FROM/WHERE of a list's source rows, as `t`; $1 = scope, $2 = owner.
-- Each variant matches one index (or partial index) exactly.
CREATE FUNCTION listing_source(p_kind smallint, p_scope bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_kind = 5 THEN 'groups t WHERE TRUE'
           ELSE 'images t WHERE ' || CASE p_kind
                    WHEN 1 THEN 'NOT t.is_private'
                    WHEN 2 THEN 'TRUE'
                    WHEN 3 THEN 't.owner_id = $2'
                    WHEN 4 THEN 't.is_private AND t.owner_id = $2'
                END
                || CASE WHEN p_scope = 0 THEN '' ELSE ' AND t.group_id = $1' END
           END
$$;

-- The lists an image belongs to.
CREATE FUNCTION listing_memberships(p_group bigint, p_owner bigint, p_private boolean)
RETURNS TABLE (kind smallint, scope bigint, owner bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT k.kind, s.scope, CASE WHEN k.kind IN (3, 4) THEN p_owner ELSE 0 END
    FROM (VALUES (0::bigint), (p_group)) AS s (scope)
    CROSS JOIN (VALUES (1::smallint), (2::smallint), (3::smallint), (4::smallint)) AS k (kind)
    WHERE s.scope IS NOT NULL
      AND (k.kind <> 1 OR NOT p_private)
      AND (k.kind <> 4 OR p_private)
$$;

-- Recompute one list from its source rows: O(list size). Used for bulk changes,
-- for a list's first rows, as the backfill, and to heal any inconsistency.
CREATE FUNCTION listing_rebuild(p_kind smallint, p_scope bigint, p_owner bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_block constant integer := 256;
    v_total bigint;
BEGIN
    INSERT INTO listing_lists AS l (kind, scope, owner, total) VALUES (p_kind, p_scope, p_owner, 0)
    ON CONFLICT (kind, scope, owner) DO UPDATE SET total = l.total;  -- takes the row lock
    DELETE FROM listing_blocks b WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner;
    EXECUTE format(
        'INSERT INTO listing_blocks (kind, scope, owner, lo_at, lo_id, n, older)'
        ' SELECT $3, $1, $2, x.at, x.id, least($4::bigint, x.cnt - x.rn + 1)::integer, x.rn - 1'
        ' FROM (SELECT t.created_at AS at, t.id, row_number() OVER (ORDER BY t.created_at, t.id) AS rn,'
        '              count(*) OVER () AS cnt FROM %s) x'
        ' WHERE (x.rn - 1) %% $4 = 0', listing_source(p_kind, p_scope))
        USING p_scope, p_owner, p_kind, v_block;
    SELECT coalesce(sum(b.n), 0) INTO v_total FROM listing_blocks b
    WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner;
    UPDATE listing_lists l SET total = v_total
    WHERE l.kind = p_kind AND l.scope = p_scope AND l.owner = p_owner;
END $$;

-- Apply one list's changes: keys sorted ascending, +1 entered, -1 left.
CREATE FUNCTION listing_apply(p_kind smallint, p_scope bigint, p_owner bigint,
                              p_ats timestamptz[], p_ids bigint[], p_ds integer[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_block constant integer := 256;
    v_count integer := cardinality(p_ids);
    v_sum bigint;
    v_total bigint;
    v_from_at timestamptz;
    v_from_id bigint;
    v_lowest record;
    v_small record;
    v_near record;
    v_big record;
    v_half integer;
    v_mid_at timestamptz;
    v_mid_id bigint;
BEGIN
    SELECT coalesce(sum(d), 0) INTO v_sum FROM unnest(p_ds) AS d;
    INSERT INTO listing_lists AS l (kind, scope, owner, total) VALUES (p_kind, p_scope, p_owner, v_sum)
    ON CONFLICT (kind, scope, owner) DO UPDATE SET total = l.total + v_sum
    RETURNING l.total INTO v_total;

    SELECT b.lo_at, b.lo_id INTO v_lowest FROM listing_blocks b
    WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
    ORDER BY b.lo_at, b.lo_id LIMIT 1;
    -- Bulk change, first rows or a broken counter: recount from the source.
    IF NOT FOUND OR v_total < 0 OR (v_count > 64 AND v_count::bigint * 8 > v_total) THEN
        PERFORM listing_rebuild(p_kind, p_scope, p_owner);
        RETURN;
    END IF;

    -- The block holding the oldest changed key; a key below every block extends the lowest one.
    IF (p_ats[1], p_ids[1]) < (v_lowest.lo_at, v_lowest.lo_id) THEN
        UPDATE listing_blocks b SET lo_at = p_ats[1], lo_id = p_ids[1]
        WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
          AND b.lo_at = v_lowest.lo_at AND b.lo_id = v_lowest.lo_id;
        v_from_at := p_ats[1];
        v_from_id := p_ids[1];
    ELSE
        SELECT b.lo_at, b.lo_id INTO v_from_at, v_from_id FROM listing_blocks b
        WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
          AND (b.lo_at, b.lo_id) <= (p_ats[1], p_ids[1])
        ORDER BY b.lo_at DESC, b.lo_id DESC LIMIT 1;
    END IF;

    -- Only blocks from there up change: their own count and the count below them.
    -- Appending a new newest image touches the top block alone.
    WITH bl AS (
        SELECT b.lo_at, b.lo_id,
               lead(b.lo_at) OVER w AS nx_at, lead(b.lo_id) OVER w AS nx_id
        FROM listing_blocks b
        WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
          AND (b.lo_at, b.lo_id) >= (v_from_at, v_from_id)
        WINDOW w AS (ORDER BY b.lo_at, b.lo_id)
    ), dl AS (
        SELECT u.at, u.id, u.d FROM unnest(p_ats, p_ids, p_ds) AS u (at, id, d)
    ), agg AS (
        SELECT bl.lo_at, bl.lo_id,
               coalesce(sum(dl.d) FILTER (WHERE (dl.at, dl.id) >= (bl.lo_at, bl.lo_id)
                   AND (bl.nx_at IS NULL OR (dl.at, dl.id) < (bl.nx_at, bl.nx_id))), 0) AS dn,
               coalesce(sum(dl.d) FILTER (WHERE (dl.at, dl.id) < (bl.lo_at, bl.lo_id)), 0) AS dold
        FROM bl CROSS JOIN dl
        GROUP BY bl.lo_at, bl.lo_id
    )
    UPDATE listing_blocks b SET n = b.n + agg.dn, older = b.older + agg.dold
    FROM agg
    WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
      AND b.lo_at = agg.lo_at AND b.lo_id = agg.lo_id AND (agg.dn <> 0 OR agg.dold <> 0);

    IF EXISTS (SELECT 1 FROM listing_blocks b
               WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
                 AND (b.lo_at, b.lo_id) >= (v_from_at, v_from_id) AND (b.n < 0 OR b.older < 0)) THEN
        PERFORM listing_rebuild(p_kind, p_scope, p_owner);
        RETURN;
    END IF;

    -- Empty blocks hold no rows: their range simply joins the block below.
    DELETE FROM listing_blocks b
    WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
      AND (b.lo_at, b.lo_id) >= (v_from_at, v_from_id) AND b.n = 0;

    -- Merge small blocks into a neighbour (keeps the block count near total / BLOCK).
    LOOP
        SELECT b.lo_at, b.lo_id, b.n, b.older INTO v_small FROM listing_blocks b
        WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
          AND (b.lo_at, b.lo_id) >= (v_from_at, v_from_id) AND b.n < v_block / 4
        ORDER BY b.lo_at, b.lo_id LIMIT 1;
        EXIT WHEN NOT FOUND;
        SELECT b.lo_at, b.lo_id INTO v_near FROM listing_blocks b
        WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
          AND (b.lo_at, b.lo_id) < (v_small.lo_at, v_small.lo_id)
        ORDER BY b.lo_at DESC, b.lo_id DESC LIMIT 1;
        IF FOUND THEN  -- into the older neighbour, whose range grows upwards
            DELETE FROM listing_blocks b
            WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
              AND b.lo_at = v_small.lo_at AND b.lo_id = v_small.lo_id;
            UPDATE listing_blocks b SET n = b.n + v_small.n
            WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
              AND b.lo_at = v_near.lo_at AND b.lo_id = v_near.lo_id;
            v_from_at := v_near.lo_at;
            v_from_id := v_near.lo_id;
        ELSE  -- the lowest block: into the newer neighbour, whose range grows downwards
            SELECT b.lo_at, b.lo_id INTO v_near FROM listing_blocks b
            WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
              AND (b.lo_at, b.lo_id) > (v_small.lo_at, v_small.lo_id)
            ORDER BY b.lo_at, b.lo_id LIMIT 1;
            EXIT WHEN NOT FOUND;  -- the only block may be small
            DELETE FROM listing_blocks b
            WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
              AND b.lo_at = v_small.lo_at AND b.lo_id = v_small.lo_id;
            UPDATE listing_blocks b
            SET lo_at = v_small.lo_at, lo_id = v_small.lo_id, n = b.n + v_small.n, older = v_small.older
            WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
              AND b.lo_at = v_near.lo_at AND b.lo_id = v_near.lo_id;
            v_from_at := v_small.lo_at;
            v_from_id := v_small.lo_id;
        END IF;
    END LOOP;

    -- Split big blocks in half: an index scan of n/2 rows, once per ~BLOCK appends.
    LOOP
        SELECT b.lo_at, b.lo_id, b.n, b.older INTO v_big FROM listing_blocks b
        WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
          AND (b.lo_at, b.lo_id) >= (v_from_at, v_from_id) AND b.n > 2 * v_block
        ORDER BY b.lo_at, b.lo_id LIMIT 1;
        EXIT WHEN NOT FOUND;
        v_half := v_big.n / 2;
        v_mid_at := NULL;
        EXECUTE format('SELECT t.created_at, t.id FROM %s AND (t.created_at, t.id) >= ($3, $4)'
                       ' ORDER BY t.created_at, t.id OFFSET $5 LIMIT 1', listing_source(p_kind, p_scope))
            INTO v_mid_at, v_mid_id USING p_scope, p_owner, v_big.lo_at, v_big.lo_id, v_half;
        IF v_mid_at IS NULL OR EXISTS (
                SELECT 1 FROM listing_blocks b
                WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
                  AND (b.lo_at, b.lo_id) > (v_big.lo_at, v_big.lo_id)
                  AND (b.lo_at, b.lo_id) <= (v_mid_at, v_mid_id)) THEN
            PERFORM listing_rebuild(p_kind, p_scope, p_owner);  -- counts disagree with rows
            RETURN;
        END IF;
        UPDATE listing_blocks b SET n = v_half
        WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
          AND b.lo_at = v_big.lo_at AND b.lo_id = v_big.lo_id;
        INSERT INTO listing_blocks (kind, scope, owner, lo_at, lo_id, n, older)
        VALUES (p_kind, p_scope, p_owner, v_mid_at, v_mid_id, v_big.n - v_half, v_big.older + v_half);
    END LOOP;
END $$;

-- At COMMIT: apply every pending change of this transaction, list by list in one
-- global order (no deadlocks between committing transactions).
CREATE FUNCTION listing_flush() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM listing_pending p WHERE p.id = NEW.id) THEN
        RETURN NULL;  -- an earlier firing in this transaction applied it
    END IF;
    -- Lists of groups deleted here are dropped; nobody else can write them any more.
    DELETE FROM listing_blocks b
    WHERE b.kind < 5 AND b.scope IN (
        SELECT u.id FROM listing_pending p, unnest(p.kinds, p.ids, p.ds) AS u (kind, id, d)
        WHERE u.kind = 5 AND u.d < 0);
    DELETE FROM listing_lists l
    WHERE l.kind < 5 AND l.scope IN (
        SELECT u.id FROM listing_pending p, unnest(p.kinds, p.ids, p.ds) AS u (kind, id, d)
        WHERE u.kind = 5 AND u.d < 0);
    FOR r IN
        SELECT x.kind, x.scope, x.owner,
               array_agg(x.at ORDER BY x.at, x.id) AS ats,
               array_agg(x.id ORDER BY x.at, x.id) AS ids,
               array_agg(x.d ORDER BY x.at, x.id) AS ds
        FROM (
            SELECT u.kind, u.scope, u.owner, u.at, u.id, sum(u.d)::integer AS d
            FROM listing_pending p,
                 unnest(p.kinds, p.scopes, p.owners, p.ats, p.ids, p.ds) AS u (kind, scope, owner, at, id, d)
            GROUP BY u.kind, u.scope, u.owner, u.at, u.id
            HAVING sum(u.d) <> 0
        ) x
        WHERE x.kind = 5 OR x.scope = 0 OR EXISTS (SELECT 1 FROM groups g WHERE g.id = x.scope)
        GROUP BY x.kind, x.scope, x.owner
        ORDER BY x.kind, x.scope, x.owner
    LOOP
        PERFORM listing_apply(r.kind, r.scope, r.owner, r.ats, r.ids, r.ds);
    END LOOP;
    DELETE FROM listing_pending;  -- sees only this transaction's rows
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER listing_pending_flush AFTER INSERT ON listing_pending
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION listing_flush();

-- Capture: one pending row per statement that changes list membership.
-- (Transition tables need one trigger per event.)
CREATE FUNCTION listing_capture_images_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO listing_pending (kinds, scopes, owners, ats, ids, ds)
    SELECT array_agg(m.kind), array_agg(m.scope), array_agg(m.owner),
           array_agg(r.created_at), array_agg(r.id), array_agg(1)
    FROM new_rows r CROSS JOIN LATERAL listing_memberships(r.group_id, r.owner_id, r.is_private) m
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE FUNCTION listing_capture_images_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO listing_pending (kinds, scopes, owners, ats, ids, ds)
    SELECT array_agg(m.kind), array_agg(m.scope), array_agg(m.owner),
           array_agg(r.created_at), array_agg(r.id), array_agg(-1)
    FROM old_rows r CROSS JOIN LATERAL listing_memberships(r.group_id, r.owner_id, r.is_private) m
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE FUNCTION listing_capture_images_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO listing_pending (kinds, scopes, owners, ats, ids, ds)
    SELECT array_agg(x.kind), array_agg(x.scope), array_agg(x.owner),
           array_agg(x.at), array_agg(x.id), array_agg(x.d)
    FROM (
        SELECT c.kind, c.scope, c.owner, c.at, c.id, sum(c.d)::integer AS d
        FROM (
            SELECT m.kind, m.scope, m.owner, r.created_at AS at, r.id, 1 AS d
            FROM new_rows r CROSS JOIN LATERAL listing_memberships(r.group_id, r.owner_id, r.is_private) m
            UNION ALL
            SELECT m.kind, m.scope, m.owner, r.created_at, r.id, -1
            FROM old_rows r CROSS JOIN LATERAL listing_memberships(r.group_id, r.owner_id, r.is_private) m
        ) c
        GROUP BY c.kind, c.scope, c.owner, c.at, c.id
        HAVING sum(c.d) <> 0
    ) x
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE TRIGGER images_listing_insert AFTER INSERT ON images
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION listing_capture_images_insert();
CREATE TRIGGER images_listing_update AFTER UPDATE ON images
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION listing_capture_images_update();
CREATE TRIGGER images_listing_delete AFTER DELETE ON images
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION listing_capture_images_delete();

CREATE FUNCTION listing_capture_groups_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO listing_pending (kinds, scopes, owners, ats, ids, ds)
    SELECT array_agg(5::smallint), array_agg(0::bigint), array_agg(0::bigint),
           array_agg(r.created_at), array_agg(r.id), array_agg(1)
    FROM new_rows r HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE FUNCTION listing_capture_groups_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO listing_pending (kinds, scopes, owners, ats, ids, ds)
    SELECT array_agg(5::smallint), array_agg(0::bigint), array_agg(0::bigint),
           array_agg(r.created_at), array_agg(r.id), array_agg(-1)
    FROM old_rows r HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE TRIGGER groups_listing_insert AFTER INSERT ON groups
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION listing_capture_groups_insert();
CREATE TRIGGER groups_listing_delete AFTER DELETE ON groups
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION listing_capture_groups_delete();

-- Truncation empties the lists too.
CREATE FUNCTION listing_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'groups' THEN
        DELETE FROM listing_blocks WHERE kind = 5 OR scope <> 0;
        DELETE FROM listing_lists WHERE kind = 5 OR scope <> 0;
    ELSE
        DELETE FROM listing_blocks WHERE kind < 5;
        DELETE FROM listing_lists WHERE kind < 5;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER images_listing_truncate AFTER TRUNCATE ON images
    FOR EACH STATEMENT EXECUTE FUNCTION listing_truncated();
CREATE TRIGGER groups_listing_truncate AFTER TRUNCATE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION listing_truncated();

-- Reads (STABLE: one snapshot per call).

-- The key at position p_pos (0 = newest) of a list, or no row.
CREATE FUNCTION listing_seek(p_kind smallint, p_scope bigint, p_owner bigint, p_pos bigint)
RETURNS TABLE (key_at timestamptz, key_id bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_total bigint;
    v_rank bigint;
    v_blk record;
    v_next_at timestamptz;
    v_next_id bigint;
BEGIN
    SELECT l.total INTO v_total FROM listing_lists l
    WHERE l.kind = p_kind AND l.scope = p_scope AND l.owner = p_owner;
    IF v_total IS NULL OR p_pos < 0 OR p_pos >= v_total THEN
        RETURN;
    END IF;
    v_rank := v_total - 1 - p_pos;  -- rank from the oldest
    SELECT b.lo_at, b.lo_id, b.n, b.older INTO v_blk FROM listing_blocks b
    WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner AND b.older <= v_rank
    ORDER BY b.older DESC, b.lo_at DESC, b.lo_id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_rank - v_blk.older <= v_blk.n / 2 THEN  -- nearer the block's lower edge: walk up
        RETURN QUERY EXECUTE format(
            'SELECT t.created_at, t.id FROM %s AND (t.created_at, t.id) >= ($3, $4)'
            ' ORDER BY t.created_at, t.id OFFSET $5 LIMIT 1', listing_source(p_kind, p_scope))
            USING p_scope, p_owner, v_blk.lo_at, v_blk.lo_id, v_rank - v_blk.older;
        RETURN;
    END IF;
    SELECT b.lo_at, b.lo_id INTO v_next_at, v_next_id FROM listing_blocks b  -- else walk down
    WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner    -- from the next block
      AND (b.lo_at, b.lo_id) > (v_blk.lo_at, v_blk.lo_id)
    ORDER BY b.lo_at, b.lo_id LIMIT 1;
    RETURN QUERY EXECUTE format(
        'SELECT t.created_at, t.id FROM %s %s ORDER BY t.created_at DESC, t.id DESC OFFSET $5 LIMIT 1',
        listing_source(p_kind, p_scope),
        CASE WHEN v_next_at IS NULL THEN '' ELSE 'AND (t.created_at, t.id) < ($3, $4)' END)
        USING p_scope, p_owner, v_next_at, v_next_id, v_blk.older + v_blk.n - 1 - v_rank;
END $$;

-- Up to p_limit keys, newest first, from key (p_at, p_id) down (NULL: from the top).
CREATE FUNCTION listing_scan(p_kind smallint, p_scope bigint, p_owner bigint,
                             p_at timestamptz, p_id bigint, p_inclusive boolean, p_limit integer)
RETURNS TABLE (key_at timestamptz, key_id bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT t.created_at, t.id FROM %s %s ORDER BY t.created_at DESC, t.id DESC LIMIT $5',
        listing_source(p_kind, p_scope),
        CASE WHEN p_at IS NULL THEN ''
             WHEN p_inclusive THEN 'AND (t.created_at, t.id) <= ($3, $4)'
             ELSE 'AND (t.created_at, t.id) < ($3, $4)' END)
        USING p_scope, p_owner, p_at, p_id, p_limit;
END $$;

-- A page of keys starting at position p_pos: a short OFFSET near the top, a seek below.
CREATE FUNCTION listing_page(p_kind smallint, p_scope bigint, p_owner bigint, p_pos bigint,
                             p_limit integer)
RETURNS TABLE (key_at timestamptz, key_id bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_at timestamptz;
    v_id bigint;
BEGIN
    IF p_pos < 256 THEN
        RETURN QUERY EXECUTE format(
            'SELECT t.created_at, t.id FROM %s ORDER BY t.created_at DESC, t.id DESC OFFSET $3 LIMIT $4',
            listing_source(p_kind, p_scope)) USING p_scope, p_owner, p_pos, p_limit;
        RETURN;
    END IF;
    SELECT s.key_at, s.key_id INTO v_at, v_id FROM listing_seek(p_kind, p_scope, p_owner, p_pos) s;
    IF v_at IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM listing_scan(p_kind, p_scope, p_owner, v_at, v_id, true, p_limit);
END $$;

-- How many of the first p_offset keys of the merge of two disjoint lists come from the
-- second (small) one: the smallest j with small[j] not newer than big[p_offset-j-1].
-- A binary search, two seeks a step: O(log min(offset, small list size)).
CREATE FUNCTION listing_merged_split(p_big_kind smallint, p_big_scope bigint, p_big_owner bigint,
                                     p_small_kind smallint, p_small_scope bigint, p_small_owner bigint,
                                     p_offset bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_big bigint;
    v_small bigint;
    v_lo bigint;
    v_hi bigint;
    v_j bigint;
    v_a_at timestamptz;
    v_a_id bigint;
    v_b_at timestamptz;
    v_b_id bigint;
BEGIN
    SELECT coalesce(max(l.total), 0) INTO v_big FROM listing_lists l
    WHERE l.kind = p_big_kind AND l.scope = p_big_scope AND l.owner = p_big_owner;
    SELECT coalesce(max(l.total), 0) INTO v_small FROM listing_lists l
    WHERE l.kind = p_small_kind AND l.scope = p_small_scope AND l.owner = p_small_owner;
    v_lo := greatest(0, p_offset - v_big);
    v_hi := least(p_offset, v_small);
    WHILE v_lo < v_hi LOOP
        v_j := (v_lo + v_hi) / 2;
        SELECT s.key_at, s.key_id INTO v_b_at, v_b_id
        FROM listing_seek(p_small_kind, p_small_scope, p_small_owner, v_j) s;
        SELECT s.key_at, s.key_id INTO v_a_at, v_a_id
        FROM listing_seek(p_big_kind, p_big_scope, p_big_owner, p_offset - v_j - 1) s;
        IF (v_b_at, v_b_id) > (v_a_at, v_a_id) THEN
            v_lo := v_j + 1;
        ELSE
            v_hi := v_j;
        END IF;
    END LOOP;
    RETURN v_lo;
END $$;

-- Lists whose blocks disagree with their rows (empty when all is well): for tests and ops.
CREATE FUNCTION listing_check(p_kind smallint, p_scope bigint, p_owner bigint)
RETURNS TABLE (problem text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_total bigint;
    v_rows bigint;
    v_blk record;
    v_n bigint;
    v_older bigint;
BEGIN
    SELECT l.total INTO v_total FROM listing_lists l
    WHERE l.kind = p_kind AND l.scope = p_scope AND l.owner = p_owner;
    EXECUTE format('SELECT count(*) FROM %s', listing_source(p_kind, p_scope))
        INTO v_rows USING p_scope, p_owner;
    IF coalesce(v_total, 0) <> v_rows THEN
        problem := format('total %s <> %s rows', v_total, v_rows);
        RETURN NEXT;
    END IF;
    FOR v_blk IN
        SELECT b.lo_at, b.lo_id, b.n, b.older,
               lead(b.lo_at) OVER w AS nx_at, lead(b.lo_id) OVER w AS nx_id,
               row_number() OVER w AS rn
        FROM listing_blocks b
        WHERE b.kind = p_kind AND b.scope = p_scope AND b.owner = p_owner
        WINDOW w AS (ORDER BY b.lo_at, b.lo_id)
    LOOP
        EXECUTE format('SELECT count(*) FILTER (WHERE (t.created_at, t.id) >= ($3, $4)'
                       '   AND ($5::timestamptz IS NULL OR (t.created_at, t.id) < ($5, $6))),'
                       ' count(*) FILTER (WHERE (t.created_at, t.id) < ($3, $4)) FROM %s',
                       listing_source(p_kind, p_scope))
            INTO v_n, v_older USING p_scope, p_owner, v_blk.lo_at, v_blk.lo_id, v_blk.nx_at, v_blk.nx_id;
        IF v_n <> v_blk.n OR v_older <> v_blk.older OR (v_blk.rn = 1 AND v_older <> 0) THEN
            problem := format('block %s/%s: n %s (rows %s), older %s (rows %s)',
                              v_blk.lo_at, v_blk.lo_id, v_blk.n, v_n, v_blk.older, v_older);
            RETURN NEXT;
        END IF;
        IF v_blk.n = 0 OR v_blk.n > 2 * 256 THEN
            problem := format('block %s/%s has %s rows', v_blk.lo_at, v_blk.lo_id, v_blk.n);
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;

-- Backfill what exists already.
SELECT listing_rebuild(x.kind, x.scope, x.owner)
FROM (SELECT DISTINCT m.kind, m.scope, m.owner
      FROM images i CROSS JOIN LATERAL listing_memberships(i.group_id, i.owner_id, i.is_private) m
      UNION SELECT 5::smallint, 0::bigint, 0::bigint) x;
