-- Vigil coordinator store, schema version 2: the lease that makes one of
-- several coordinators sharing this database the active one.
--
-- Leadership itself is a session advisory lock, held on a connection of its
-- own by the active coordinator; this row is its fencing token. Whoever takes
-- the lock bumps `generation`, and every commit checks, in its own
-- transaction, that the generation is still the one its coordinator took: a
-- coordinator that lost the lock without noticing cannot write.
CREATE TABLE vigil_lease (
    id         integer PRIMARY KEY CHECK (id = 1),
    generation bigint      NOT NULL,
    holder     text        NOT NULL,
    taken_at   timestamptz NOT NULL
);
INSERT INTO vigil_lease (id, generation, holder, taken_at) VALUES (1, 0, '', now());
