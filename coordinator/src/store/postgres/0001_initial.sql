-- Vigil coordinator store, schema version 1 (store format 4: every stored
-- token carries its epoch's parity in its last bit). Nothing here is
-- reversible to personal data: references are opaque, tokens are re-keyed
-- with the coordinator's pepper, record details are sealed for nodes only.

-- Settings remembered across restarts (epoch, policy digest, index sizes).
CREATE TABLE vigil_meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

-- A force's enrolled subjects: packed (kind, token) pairs.
CREATE TABLE subjects (
    force     text  NOT NULL,
    pseudonym bytea NOT NULL,
    tokens    bytea NOT NULL,
    PRIMARY KEY (force, pseudonym)
);

-- A source's national records: packed tokens and the sealed details.
CREATE TABLE records (
    source     text  NOT NULL,
    record_ref bytea NOT NULL,
    tokens     bytea NOT NULL,
    sealed     bytea NOT NULL,
    PRIMARY KEY (source, record_ref)
);

-- The last batch applied for each sender: tells a retry from a new send.
CREATE TABLE senders (
    caller     text   PRIMARY KEY,
    sequence   bigint NOT NULL,
    commitment text   NOT NULL,
    receipt    bytea  NOT NULL
);

-- Disclosures and retractions, in each force's sequence; pending until the
-- force acknowledges them.
CREATE TABLE disclosures (
    force   text    NOT NULL,
    seq     bigint  NOT NULL,
    message bytea   NOT NULL,
    pending boolean NOT NULL,
    PRIMARY KEY (force, seq)
);
CREATE INDEX disclosures_pending ON disclosures (force, seq) WHERE pending;

-- Disclosures in force (not retracted), with their latest version.
CREATE TABLE active_cases (
    force         text             NOT NULL,
    pseudonym     bytea            NOT NULL,
    source        text             NOT NULL,
    record_ref    bytea            NOT NULL,
    disclosure_id text             NOT NULL,
    version       bigint           NOT NULL,
    agreeing      bigint           NOT NULL,
    probability   double precision NOT NULL,
    PRIMARY KEY (force, pseudonym, source, record_ref)
);

-- The transparency log: entries by leaf index, and signed checkpoints.
CREATE TABLE log (
    idx   bigint PRIMARY KEY,
    entry bytea  NOT NULL
);
CREATE TABLE checkpoints (
    size bigint PRIMARY KEY,
    note text   NOT NULL
);
