//! The PostgreSQL schema, as the migrations that build it in order.

/// Schema changes in order; `gwmo_schema.version` records how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE devices (
        dev_id              TEXT PRIMARY KEY,
        auth                TEXT NOT NULL,
        client_name         TEXT NOT NULL,
        client_secret       TEXT NOT NULL,
        client_nonce        BYTEA NOT NULL DEFAULT '',
        server_name         TEXT NOT NULL,
        server_secret       TEXT NOT NULL,
        server_nonce        BYTEA NOT NULL DEFAULT '',
        notify_address      TEXT,
        devinfo             TEXT NOT NULL DEFAULT '{}',
        encoding            TEXT,
        sessions            BIGINT NOT NULL DEFAULT 0,
        created_at          BIGINT NOT NULL,
        last_session_at     BIGINT,
        auth_switch_to      TEXT,
        auth_switch_command BIGINT
    );
    CREATE TABLE commands (
        id          BIGSERIAL PRIMARY KEY,
        dev_id      TEXT NOT NULL REFERENCES devices(dev_id) ON DELETE CASCADE,
        spec        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'done')),
        session_key TEXT,
        status      INTEGER,
        results     TEXT,
        queued_at   BIGINT NOT NULL,
        sent_at     BIGINT,
        done_at     BIGINT
    );
    CREATE INDEX commands_by_device ON commands (dev_id, state, id);
    CREATE INDEX commands_by_session ON commands (session_key) WHERE state = 'sent';
    CREATE TABLE events (
        id     BIGSERIAL PRIMARY KEY,
        at     BIGINT NOT NULL,
        dev_id TEXT,
        kind   TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE gateways (
        gateway_id      TEXT PRIMARY KEY,
        dev_id          TEXT NOT NULL REFERENCES devices(dev_id),
        dm_url          TEXT NOT NULL,
        server_assisted BOOLEAN NOT NULL DEFAULT TRUE
    );
    CREATE INDEX gateways_by_device ON gateways (dev_id);
    CREATE TABLE associations (
        dev_id     TEXT PRIMARY KEY,
        gateway_id TEXT NOT NULL REFERENCES gateways(gateway_id),
        origin     TEXT NOT NULL,
        since      BIGINT NOT NULL
    );
    CREATE TABLE pending_bootstraps (
        command       BIGINT PRIMARY KEY,
        dev_id        TEXT NOT NULL,
        gateway_id    TEXT NOT NULL,
        client_secret TEXT NOT NULL,
        server_secret TEXT NOT NULL
    );
    CREATE TABLE fanouts (
        id         BIGSERIAL PRIMARY KEY,
        gateway_id TEXT NOT NULL REFERENCES gateways(gateway_id),
        targets    TEXT NOT NULL,
        spec       TEXT NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('sent', 'done')),
        results    TEXT,
        created_at BIGINT NOT NULL,
        done_at    BIGINT
    );
"#,
    r#"
    CREATE INDEX devices_by_auth_switch ON devices (auth_switch_command)
        WHERE auth_switch_command IS NOT NULL;
"#,
    r#"
    ALTER TABLE devices ADD COLUMN tree TEXT, ADD COLUMN tree_at BIGINT;
"#,
    crate::store::ATTACH_KEY_MIGRATION,
    crate::store::HISTORY_INDEXES_MIGRATION,
    // Commands an operator cancels or that expire unsent: two more states, an expiry,
    // and history forgotten by end time whatever the end.
    r#"
    ALTER TABLE commands
        DROP CONSTRAINT commands_state_check,
        ADD CONSTRAINT commands_state_check
            CHECK (state IN ('queued', 'sent', 'done', 'cancelled', 'expired')),
        ADD COLUMN expires_at BIGINT;
    DROP INDEX commands_by_done_at;
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
        created_at   BIGINT NOT NULL
    );
    CREATE TABLE audit (
        id       BIGSERIAL PRIMARY KEY,
        at       BIGINT NOT NULL,
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
        id                BIGSERIAL PRIMARY KEY,
        name              TEXT NOT NULL,
        spec              TEXT NOT NULL,
        filter            TEXT NOT NULL,
        wave_size         BIGINT NOT NULL,
        threshold_percent BIGINT NOT NULL,
        state             TEXT NOT NULL CHECK (state IN ('running', 'paused', 'cancelled', 'done')),
        wave              BIGINT NOT NULL,
        accepted_wave     BIGINT NOT NULL,
        reason            TEXT,
        created_at        BIGINT NOT NULL,
        updated_at        BIGINT NOT NULL
    );
"#,
    crate::store::CAMPAIGN_DEVICES_MIGRATION,
    crate::store::TRUST_MIGRATION,
    crate::store::firmware::FIRMWARE_MIGRATION,
    crate::store::SESSION_INDEX_MIGRATION,
];
