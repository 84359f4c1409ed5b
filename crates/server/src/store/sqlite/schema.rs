//! The SQLite schema, as the migrations that build it in order.

/// Schema changes in order; `PRAGMA user_version` records how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE devices (
        dev_id          TEXT PRIMARY KEY,
        auth            TEXT NOT NULL,
        client_name     TEXT NOT NULL,
        client_secret   TEXT NOT NULL,
        client_nonce    BLOB NOT NULL DEFAULT x'',
        server_name     TEXT NOT NULL,
        server_secret   TEXT NOT NULL,
        server_nonce    BLOB NOT NULL DEFAULT x'',
        notify_address  TEXT,
        devinfo         TEXT NOT NULL DEFAULT '{}',
        encoding        TEXT,
        sessions        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        last_session_at INTEGER
    );
    CREATE TABLE commands (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        dev_id      TEXT NOT NULL REFERENCES devices(dev_id) ON DELETE CASCADE,
        spec        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'done')),
        session_key TEXT,
        status      INTEGER,
        results     TEXT,
        queued_at   INTEGER NOT NULL,
        sent_at     INTEGER,
        done_at     INTEGER
    );
    CREATE INDEX commands_by_device ON commands (dev_id, state, id);
    CREATE INDEX commands_by_session ON commands (session_key) WHERE state = 'sent';
    CREATE TABLE events (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        dev_id TEXT,
        kind   TEXT NOT NULL,
        detail TEXT NOT NULL
    );
"#,
    r#"
    ALTER TABLE devices ADD COLUMN auth_switch_to TEXT;
    ALTER TABLE devices ADD COLUMN auth_switch_command INTEGER;
"#,
    r#"
    CREATE TABLE gateways (
        gateway_id      TEXT PRIMARY KEY,
        dev_id          TEXT NOT NULL REFERENCES devices(dev_id),
        dm_url          TEXT NOT NULL,
        server_assisted INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE associations (
        dev_id     TEXT PRIMARY KEY REFERENCES devices(dev_id) ON DELETE CASCADE,
        gateway_id TEXT NOT NULL REFERENCES gateways(gateway_id),
        origin     TEXT NOT NULL,
        since      INTEGER NOT NULL
    );
    CREATE TABLE pending_bootstraps (
        command       INTEGER PRIMARY KEY,
        dev_id        TEXT NOT NULL,
        gateway_id    TEXT NOT NULL,
        client_secret TEXT NOT NULL,
        server_secret TEXT NOT NULL
    );
"#,
    r#"
    CREATE TABLE fanouts (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        gateway_id TEXT NOT NULL REFERENCES gateways(gateway_id),
        targets    TEXT NOT NULL,
        spec       TEXT NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('sent', 'done')),
        results    TEXT,
        created_at INTEGER NOT NULL,
        done_at    INTEGER
    );
"#,
    // A gateway may report devices this server never enrolled (blank devices bootstrapped
    // locally): associations no longer require an enrolled device.
    r#"
    CREATE TABLE associations_any (
        dev_id     TEXT PRIMARY KEY,
        gateway_id TEXT NOT NULL REFERENCES gateways(gateway_id),
        origin     TEXT NOT NULL,
        since      INTEGER NOT NULL
    );
    INSERT INTO associations_any SELECT dev_id, gateway_id, origin, since FROM associations;
    DROP TABLE associations;
    ALTER TABLE associations_any RENAME TO associations;
"#,
    // Settling a command looked for a planned authentication switch by scanning every
    // device (the largest server cost at 10,000 devices); gateway reports look up the
    // gateway by its DevId.
    r#"
    CREATE INDEX devices_by_auth_switch ON devices (auth_switch_command)
        WHERE auth_switch_command IS NOT NULL;
    CREATE INDEX gateways_by_device ON gateways (dev_id);
"#,
    // The DM tree each device last reported (TNDS), for the operator.
    r#"
    ALTER TABLE devices ADD COLUMN tree TEXT;
    ALTER TABLE devices ADD COLUMN tree_at INTEGER;
"#,
    crate::store::ATTACH_KEY_MIGRATION,
    crate::store::HISTORY_INDEXES_MIGRATION,
    // Commands an operator cancels or that expire unsent: two more states (SQLite
    // changes a CHECK only by rebuilding the table), an expiry, and history forgotten
    // by end time whatever the end.
    r#"
    CREATE TABLE commands_v2 (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        dev_id      TEXT NOT NULL REFERENCES devices(dev_id) ON DELETE CASCADE,
        spec        TEXT NOT NULL,
        state       TEXT NOT NULL
                    CHECK (state IN ('queued', 'sent', 'done', 'cancelled', 'expired')),
        session_key TEXT,
        status      INTEGER,
        results     TEXT,
        queued_at   INTEGER NOT NULL,
        sent_at     INTEGER,
        done_at     INTEGER,
        expires_at  INTEGER
    );
    INSERT INTO commands_v2
           (id, dev_id, spec, state, session_key, status, results, queued_at, sent_at, done_at)
    SELECT id, dev_id, spec, state, session_key, status, results, queued_at, sent_at, done_at
      FROM commands;
    DROP TABLE commands;
    ALTER TABLE commands_v2 RENAME TO commands;
    CREATE INDEX commands_by_device ON commands (dev_id, state, id);
    CREATE INDEX commands_by_session ON commands (session_key) WHERE state = 'sent';
    CREATE INDEX commands_by_done_at ON commands (done_at) WHERE done_at IS NOT NULL;
    CREATE INDEX commands_by_expiry ON commands (expires_at)
        WHERE state = 'queued' AND expires_at IS NOT NULL;
"#,
    // Operator accounts of the admin API (tokens kept as SHA-256 digests) and the
    // audit log of what they did and what was refused.
    r#"
    CREATE TABLE operators (
        name         TEXT PRIMARY KEY,
        role         TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at   INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       INTEGER NOT NULL,
        operator TEXT,
        role     TEXT,
        source   TEXT NOT NULL,
        method   TEXT NOT NULL,
        path     TEXT NOT NULL,
        status   INTEGER NOT NULL
    );
    CREATE INDEX audit_by_time ON audit (at);
    CREATE INDEX fanouts_by_gateway ON fanouts (gateway_id, id);
    CREATE INDEX associations_by_gateway ON associations (gateway_id, dev_id);
"#,
    crate::store::DEVDETAIL_AND_TAGS_MIGRATION,
    // Campaigns: a command for the devices a filter matched, in waves.
    r#"
    CREATE TABLE campaigns (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        name              TEXT NOT NULL,
        spec              TEXT NOT NULL,
        filter            TEXT NOT NULL,
        wave_size         INTEGER NOT NULL,
        threshold_percent INTEGER NOT NULL,
        state             TEXT NOT NULL CHECK (state IN ('running', 'paused', 'cancelled', 'done')),
        wave              INTEGER NOT NULL,
        accepted_wave     INTEGER NOT NULL,
        reason            TEXT,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );
"#,
    crate::store::CAMPAIGN_DEVICES_MIGRATION,
    crate::store::TRUST_MIGRATION,
    crate::store::firmware::FIRMWARE_MIGRATION,
    crate::store::SESSION_INDEX_MIGRATION,
    // The DM tree a device reported, out of the device's row: SQLite writes a row
    // whole when it changes size, so a session that changed a device's DevInfo or
    // DevDetail wrote its last tree report again (27 pages for 100 KB). PostgreSQL
    // keeps such a value apart by itself (TOAST) and keeps the column.
    r#"
    CREATE TABLE device_trees (
        dev_id TEXT PRIMARY KEY REFERENCES devices(dev_id) ON DELETE CASCADE,
        tnds   TEXT NOT NULL,
        at     INTEGER NOT NULL
    );
    INSERT INTO device_trees (dev_id, tnds, at)
         SELECT dev_id, tree, coalesce(tree_at, 0) FROM devices WHERE tree IS NOT NULL;
    ALTER TABLE devices DROP COLUMN tree;
    ALTER TABLE devices DROP COLUMN tree_at;
"#,
    // The command states checked by comparisons: SQLite checks a CHECK with an IN
    // list by building a temporary table of the list each time a statement that
    // changes the column runs, which the claim and the completion of every command do
    // (a rebuild: SQLite changes a CHECK no other way). The ids go on counting from
    // where they were, also past commands already forgotten.
    r#"
    CREATE TABLE commands_v3 (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        dev_id      TEXT NOT NULL REFERENCES devices(dev_id) ON DELETE CASCADE,
        spec        TEXT NOT NULL,
        state       TEXT NOT NULL
                    CHECK (state = 'queued' OR state = 'sent' OR state = 'done'
                           OR state = 'cancelled' OR state = 'expired'),
        session_key TEXT,
        status      INTEGER,
        results     TEXT,
        queued_at   INTEGER NOT NULL,
        sent_at     INTEGER,
        done_at     INTEGER,
        expires_at  INTEGER
    );
    INSERT INTO commands_v3
           (id, dev_id, spec, state, session_key, status, results, queued_at, sent_at, done_at,
            expires_at)
    SELECT id, dev_id, spec, state, session_key, status, results, queued_at, sent_at, done_at,
           expires_at
      FROM commands;
    INSERT INTO sqlite_sequence (name, seq)
         SELECT 'commands_v3', seq FROM sqlite_sequence
          WHERE name = 'commands'
            AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'commands_v3');
    UPDATE sqlite_sequence
       SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'commands'))
     WHERE name = 'commands_v3'
       AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'commands');
    DROP TABLE commands;
    ALTER TABLE commands_v3 RENAME TO commands;
    CREATE INDEX commands_by_device ON commands (dev_id, state, id);
    CREATE INDEX commands_by_done_at ON commands (done_at) WHERE done_at IS NOT NULL;
    CREATE INDEX commands_by_expiry ON commands (expires_at)
        WHERE state = 'queued' AND expires_at IS NOT NULL;
"#,
    // A device's commands by id, and its queued ones apart. The index by device held
    // the state, so claiming and completing each command moved its entry there: a page
    // of that index in the commits of both messages of a session. The index by id
    // never changes after the queueing; the queued ones change at the claim only.
    r#"
    DROP INDEX commands_by_device;
    CREATE INDEX commands_by_device ON commands (dev_id, id);
    CREATE INDEX commands_queued ON commands (dev_id, id) WHERE state = 'queued';
"#,
];
