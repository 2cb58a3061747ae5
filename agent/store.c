/*
 * store: drover's durable state in one SQLite database (WAL, synchronous=FULL,
 * migrations by PRAGMA user_version). The only file that holds SQL; it never
 * interprets events or pipelines beyond the few columns it indexes.
 */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonenc.h"
#include "log.h"
#include "util.h"

#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_PROBE_BUSY_TIMEOUT_MS 250
#define STORE_RUNS_LIMIT_DEFAULT 100
#define STORE_RUNS_LIMIT_MAX 1000

/* Filter bits of the run-list statements: one prepared statement per combination. */
enum {
	RUNS_BY_PIPELINE = 1,
	RUNS_BY_STATUS = 2,
	RUNS_BY_REPO = 4,
	RUNS_LIST_VARIANTS = 8,
};

struct store {
	sqlite3 *db;
	int tx_depth;
	bool is_tx_failed; /* an inner rollback doomed the outermost transaction */

	sqlite3_stmt *tx_begin, *tx_commit, *tx_rollback;
	sqlite3_stmt *event_insert, *event_get, *event_exists;
	sqlite3_stmt *events_held, *event_release, *event_drop_runs, *event_drop, *event_runs;
	sqlite3_stmt *run_insert, *run_update, *run_get, *runs_unfinished;
	sqlite3_stmt *stage_insert, *stage_update, *stage_attempt_upsert, *stages_get;
	sqlite3_stmt *output_set, *outputs_get;
	sqlite3_stmt *run_attempt_add, *run_attempts_get, *run_set_definition, *stage_delete;
	sqlite3_stmt *stage_attempts_get, *outputs_delete, *run_attempt_describe,
	    *event_set_outcome;
	sqlite3_stmt *stage_proc_add, *stage_procs_delete, *stage_procs_list, *stage_procs_clear;
	sqlite3_stmt *outbox_add, *outbox_next, *outbox_delete, *outbox_count;
	sqlite3_stmt *runs_list[RUNS_LIST_VARIANTS];
	sqlite3_stmt *replay_command_add, *replay_command_last;
	struct strbuf body_text; /* an event's JSON while it is inserted, reused (owned) */
};

/*
 * Schema migrations, applied in order: migrations[i] takes the database from
 * user_version i to i + 1. Only ever append; never edit a released entry.
 * Times are epoch milliseconds, NULL for "not yet"; exit_code NULL for none.
 */
static const char *const migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE events ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " kind TEXT, source TEXT, repo TEXT,"
    " outcome TEXT NOT NULL,"
    " error TEXT,"
    " body TEXT,"
    " topic TEXT, partition INTEGER, \"offset\" INTEGER,"
    " received_at INTEGER NOT NULL);"
    "CREATE TABLE runs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " pipeline TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " repo TEXT, sha TEXT, branch TEXT,"
    " event_id TEXT, event_kind TEXT,"
    " concurrency_group TEXT, lock_name TEXT,"
    " definition TEXT NOT NULL,"
    " workspace TEXT,"
    " attempt INTEGER NOT NULL DEFAULT 1,"
    " created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER);"
    "CREATE INDEX runs_status ON runs (status);"
    "CREATE INDEX runs_pipeline ON runs (pipeline);"
    "CREATE INDEX runs_repo ON runs (repo);"
    "CREATE INDEX runs_event_id ON runs (event_id);"
    "CREATE TABLE stages ("
    " run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    " name TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " status TEXT NOT NULL,"
    " attempt INTEGER NOT NULL DEFAULT 0,"
    " exit_code INTEGER,"
    " started_at INTEGER, finished_at INTEGER,"
    " summary TEXT, resume_token TEXT,"
    " PRIMARY KEY (run_id, name));"
    "CREATE TABLE stage_attempts ("
    " run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    " stage TEXT NOT NULL,"
    " attempt INTEGER NOT NULL,"
    " status TEXT NOT NULL,"
    " exit_code INTEGER,"
    " started_at INTEGER, finished_at INTEGER,"
    " summary TEXT,"
    " PRIMARY KEY (run_id, stage, attempt));"
    "CREATE TABLE outputs ("
    " run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    " stage TEXT NOT NULL, key TEXT NOT NULL, value TEXT,"
    " PRIMARY KEY (run_id, stage, key));"
    "CREATE TABLE outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " topic TEXT NOT NULL, key TEXT, value BLOB, headers BLOB,"
    " created_at INTEGER NOT NULL);",
    /* 2: process groups of running stage attempts, for the start after a crash. */
    "CREATE TABLE stage_procs ("
    " pgid INTEGER NOT NULL,"
    " start_time INTEGER NOT NULL,"
    " run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    " stage TEXT NOT NULL,"
    " attempt INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " PRIMARY KEY (pgid, start_time));"
    "CREATE INDEX stage_procs_stage ON stage_procs (run_id, stage);",
    /*
     * 3: outbox keys are bytes (a dead letter keeps a binary key, e.g. one
     * starting with a zero byte). SQLite cannot change a column's type, so
     * the table is copied; its AUTOINCREMENT counter moves with it so that
     * no id is ever handed out twice.
     */
    "CREATE TABLE outbox_v3 ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " topic TEXT NOT NULL, key BLOB, value BLOB, headers BLOB,"
    " created_at INTEGER NOT NULL);"
    "INSERT INTO outbox_v3 (id, topic, key, value, headers, created_at)"
    " SELECT id, topic, CAST(key AS BLOB), value, headers, created_at FROM outbox ORDER BY id;"
    "DELETE FROM sqlite_sequence WHERE name = 'outbox_v3';"
    "UPDATE sqlite_sequence SET name = 'outbox_v3' WHERE name = 'outbox';"
    "DROP TABLE outbox;"
    "ALTER TABLE outbox_v3 RENAME TO outbox;",
    /*
     * 4: an event is held (its runs not started) until the offset commit
     * covering it is acknowledged by Kafka (see claim.h).
     */
    ("ALTER TABLE events ADD COLUMN held INTEGER NOT NULL DEFAULT 0;"
     "CREATE INDEX events_held ON events (held) WHERE held = 1;"),
    /*
     * 5: replays. Every run attempt (1 is the original) with who asked, why
     * and what it re-ran; each stage and stage attempt says which run attempt
     * it belongs to, and a stage the number of its first attempt in the
     * current run attempt (its retries count from there).
     */
    ("CREATE TABLE run_attempts ("
     " run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
     " attempt INTEGER NOT NULL,"
     " requested_by TEXT, reason TEXT,"
     " requested_at INTEGER NOT NULL,"
     " mode TEXT NOT NULL,"
     " stages TEXT,"
     " latest_pipeline INTEGER NOT NULL DEFAULT 0,"
     " replaced_definition TEXT,"
     " origin TEXT,"
     " PRIMARY KEY (run_id, attempt));"
     "INSERT INTO run_attempts (run_id, attempt, requested_at, mode)"
     " SELECT id, 1, created_at, 'original' FROM runs;"
     "ALTER TABLE stages ADD COLUMN run_attempt INTEGER NOT NULL DEFAULT 1;"
     "ALTER TABLE stages ADD COLUMN first_attempt INTEGER NOT NULL DEFAULT 1;"
     "ALTER TABLE stage_attempts ADD COLUMN run_attempt INTEGER NOT NULL DEFAULT 1;"),
    /* 6: one row that /readyz rewrites to prove the database takes a write. */
    "CREATE TABLE probe (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at INTEGER NOT NULL);",
    /*
     * 7: replay commands this agent sent to the events topic (acknowledged by
     * Kafka), so that a second request for the same run attempt is refused
     * instead of being dropped as a duplicate by the executing agent.
     */
    ("CREATE TABLE replay_commands ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
     " attempt INTEGER NOT NULL,"
     " sent_at INTEGER NOT NULL,"
     " topic TEXT, partition INTEGER, \"offset\" INTEGER);"
     "CREATE INDEX replay_commands_run ON replay_commands (run_id, attempt);"),
};

#define RUN_COLUMNS                                                                                \
	"id, pipeline, status, repo, sha, branch, event_id, event_kind, concurrency_group, "       \
	"lock_name, definition, workspace, attempt, created_at, started_at, finished_at"

struct stmt_spec {
	size_t offset; /* of the sqlite3_stmt * field in struct store */
	const char *sql;
};

#define STMT(field, text)                                                                          \
	{                                                                                          \
		offsetof(struct store, field), text                                                \
	}

static const struct stmt_spec stmt_specs[] = {
    STMT(tx_begin, "BEGIN IMMEDIATE"),
    STMT(tx_commit, "COMMIT"),
    STMT(tx_rollback, "ROLLBACK"),
    STMT(event_insert,
	 "INSERT INTO events (id, kind, source, repo, outcome, error, body, topic, partition,"
	 " \"offset\", received_at, held) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
	 " ?12) ON CONFLICT (id) DO NOTHING"),
    STMT(events_held, "SELECT id, topic, partition, \"offset\" FROM events WHERE held = 1"
		      " ORDER BY topic, partition, \"offset\""),
    STMT(event_release, "UPDATE events SET held = 0 WHERE id = ?1"),
    STMT(event_drop_runs, "DELETE FROM runs WHERE event_id = ?1"),
    STMT(event_drop, "DELETE FROM events WHERE id = ?1"),
    STMT(event_runs, "SELECT id FROM runs WHERE event_id = ?1 ORDER BY id"),
    STMT(event_get, "SELECT body FROM events WHERE id = ?1"),
    STMT(event_exists, "SELECT 1 FROM events WHERE id = ?1"),
    STMT(run_insert,
	 "INSERT INTO runs (pipeline, status, repo, sha, branch, event_id, event_kind,"
	 " concurrency_group, lock_name, definition, workspace, attempt, created_at, started_at,"
	 " finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
    STMT(run_update, "UPDATE runs SET status = ?2, sha = ?3, workspace = ?4, attempt = ?5,"
		     " started_at = ?6, finished_at = ?7 WHERE id = ?1"),
    STMT(run_get, "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?1"),
    STMT(runs_unfinished,
	 "SELECT id FROM runs WHERE status IN (?1, ?2) AND (event_id IS NULL"
	 " OR event_id NOT IN (SELECT id FROM events WHERE held = 1)) ORDER BY id"),
    STMT(stage_insert,
	 "INSERT INTO stages (run_id, name, idx, status, attempt, exit_code, started_at,"
	 " finished_at, summary, resume_token, run_attempt, first_attempt) VALUES (?1, ?2, ?3,"
	 " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
    STMT(stage_update, "UPDATE stages SET status = ?3, attempt = ?4, exit_code = ?5,"
		       " started_at = ?6, finished_at = ?7, summary = ?8, resume_token = ?9,"
		       " idx = ?10, run_attempt = ?11, first_attempt = ?12"
		       " WHERE run_id = ?1 AND name = ?2"),
    STMT(stage_attempt_upsert,
	 "INSERT INTO stage_attempts (run_id, stage, attempt, status, exit_code, started_at,"
	 " finished_at, summary, run_attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
	 " ON CONFLICT (run_id, stage, attempt) DO UPDATE SET status = excluded.status,"
	 " exit_code = excluded.exit_code, started_at = excluded.started_at,"
	 " finished_at = excluded.finished_at, summary = excluded.summary,"
	 " run_attempt = excluded.run_attempt"),
    STMT(stages_get, "SELECT run_id, name, idx, status, attempt, exit_code, started_at,"
		     " finished_at, summary, resume_token, run_attempt, first_attempt"
		     " FROM stages WHERE run_id = ?1 ORDER BY idx, name"),
    STMT(stage_delete, "DELETE FROM stages WHERE run_id = ?1 AND name = ?2"),
    STMT(stage_attempts_get,
	 "SELECT attempt, run_attempt, status, exit_code, started_at, finished_at"
	 " FROM stage_attempts WHERE run_id = ?1 AND stage = ?2 ORDER BY attempt"),
    STMT(run_attempt_add,
	 "INSERT INTO run_attempts (run_id, attempt, requested_by, reason, requested_at, mode,"
	 " stages, latest_pipeline, replaced_definition, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
	 " ?7, ?8, ?9, ?10)"),
    STMT(run_attempt_describe,
	 "UPDATE run_attempts SET requested_by = ?3, reason = ?4, requested_at = ?5, mode = ?6,"
	 " stages = ?7, latest_pipeline = ?8, replaced_definition = ?9, origin = ?10"
	 " WHERE run_id = ?1 AND attempt = ?2"),
    STMT(run_attempts_get, "SELECT attempt, requested_by, reason, requested_at, mode, stages,"
			   " latest_pipeline, origin FROM run_attempts WHERE run_id = ?1"
			   " ORDER BY attempt"),
    STMT(event_set_outcome, "UPDATE events SET outcome = ?2, error = ?3 WHERE id = ?1"),
    STMT(run_set_definition, "UPDATE runs SET definition = ?2 WHERE id = ?1"),
    STMT(stage_proc_add,
	 "INSERT INTO stage_procs (pgid, start_time, run_id, stage, attempt, created_at)"
	 " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (pgid, start_time) DO UPDATE SET"
	 " run_id = excluded.run_id, stage = excluded.stage, attempt = excluded.attempt"),
    STMT(stage_procs_delete, "DELETE FROM stage_procs WHERE run_id = ?1 AND stage = ?2"),
    STMT(stage_procs_list, "SELECT run_id, stage, attempt, pgid, start_time FROM stage_procs"
			   " ORDER BY created_at, rowid"),
    STMT(stage_procs_clear, "DELETE FROM stage_procs"),
    STMT(output_set, "INSERT INTO outputs (run_id, stage, key, value) VALUES (?1, ?2, ?3, ?4)"
		     " ON CONFLICT (run_id, stage, key) DO UPDATE SET value = excluded.value"),
    STMT(outputs_get, "SELECT stage, key, value FROM outputs WHERE run_id = ?1"
		      " ORDER BY stage, key"),
    STMT(outputs_delete, "DELETE FROM outputs WHERE run_id = ?1 AND stage = ?2"),
    STMT(outbox_add, "INSERT INTO outbox (topic, key, value, created_at, headers)"
		     " VALUES (?1, ?2, ?3, ?4, ?5)"),
    STMT(outbox_next, "SELECT id, topic, key, value, headers FROM outbox WHERE id > ?1 ORDER BY id"
		      " LIMIT ?2"),
    STMT(outbox_delete, "DELETE FROM outbox WHERE id = ?1"),
    STMT(outbox_count, "SELECT count(*) FROM outbox"),
    STMT(replay_command_add,
	 "INSERT INTO replay_commands (id, run_id, attempt, sent_at, topic, partition, \"offset\")"
	 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING"),
    STMT(replay_command_last,
	 "SELECT id, sent_at, topic, partition, \"offset\", (SELECT count(*) FROM replay_commands"
	 " WHERE run_id = ?1 AND attempt = ?2) FROM replay_commands WHERE run_id = ?1"
	 " AND attempt = ?2 ORDER BY sent_at DESC, rowid DESC LIMIT 1"),
};

static sqlite3_stmt **stmt_slot(struct store *s, const struct stmt_spec *spec)
{
	return (sqlite3_stmt **)(void *)((char *)s + spec->offset);
}

/* ---- statement helpers ---- */

static void stmt_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Logs the current SQLite error once, with what we were doing; always -1. */
static int stmt_fail(struct store *s, sqlite3_stmt *st, const char *purpose)
{
	log_error("store: %s failed: %s", purpose, sqlite3_errmsg(s->db));
	stmt_done(st);
	return -1;
}

/* Steps a statement that returns no rows to its end and resets it. */
static int stmt_run(struct store *s, sqlite3_stmt *st, const char *purpose)
{
	if (sqlite3_step(st) != SQLITE_DONE)
		return stmt_fail(s, st, purpose);
	stmt_done(st);
	return 0;
}

/* Steps a bound statement to its end, collecting column 0 as ids (caller frees). */
static int stmt_ids(struct store *s, sqlite3_stmt *st, const char *purpose, int64_t **ids,
		    size_t *n)
{
	int64_t *v = NULL;
	size_t count = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = xgrow(v, &cap, count, sizeof *v);
		v[count++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE) {
		free(v);
		return stmt_fail(s, st, purpose);
	}
	stmt_done(st);
	*ids = v;
	*n = count;
	return 0;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
	return sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC); /* NULL binds NULL */
}

static int bind_int64(sqlite3_stmt *st, int i, int64_t v)
{
	return sqlite3_bind_int64(st, i, v);
}

static int bind_time(sqlite3_stmt *st, int i, int64_t epoch_ms)
{
	return epoch_ms == 0 ? sqlite3_bind_null(st, i) : sqlite3_bind_int64(st, i, epoch_ms);
}

static int bind_exit_code(sqlite3_stmt *st, int i, int exit_code)
{
	return exit_code < 0 ? sqlite3_bind_null(st, i) : sqlite3_bind_int(st, i, exit_code);
}

static int bind_status(sqlite3_stmt *st, int i, enum status status)
{
	return bind_text(st, i, status_name(status));
}

static char *column_strdup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t == NULL ? NULL : xstrdup((const char *)t);
}

static enum status column_status(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	int status = t == NULL ? -1 : status_parse((const char *)t);
	if (status < 0) {
		log_warn("store: unknown status \"%s\" in the database, read as error",
			 t == NULL ? "(null)" : (const char *)t);
		return STATUS_ERROR;
	}
	return (enum status)status;
}

static int column_exit_code(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int(st, i);
}

/* ---- open, migrate, close ---- */

static int db_exec(sqlite3 *db, const char *sql, const char *purpose, char *err, size_t err_len)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, err_len, "%s failed: %s", purpose,
			 msg != NULL ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* The first column of the first row of sql as an integer (or text into text_buf). */
static int db_query_one(sqlite3 *db, const char *sql, int64_t *out, char *text_buf, size_t text_len,
			char *err, size_t err_len)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		snprintf(err, err_len, "%s failed: %s", sql, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return -1;
	}
	if (out != NULL)
		*out = sqlite3_column_int64(st, 0);
	if (text_buf != NULL) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(text_buf, text_len, "%s", t != NULL ? (const char *)t : "");
	}
	sqlite3_finalize(st);
	return 0;
}

static int db_refuse_newer(const char *path, int64_t version, char *err, size_t err_len)
{
	int64_t known = (int64_t)ARRAY_LEN(migrations);
	if (version <= known)
		return 0;
	snprintf(err, err_len,
		 "%s has schema version %lld, newer than this drover knows (%lld): "
		 "run a newer drover or use another state_dir",
		 path, (long long)version, (long long)known);
	return -1;
}

/*
 * Brings the schema up to the newest version, one migration per transaction.
 * The version is re-read under the write lock, so two agents opening the same
 * database at once cannot both apply a migration.
 */
static int db_migrate(sqlite3 *db, const char *path, char *err, size_t err_len)
{
	for (;;) {
		int64_t version;
		if (db_exec(db, "BEGIN IMMEDIATE", "starting a migration", err, err_len) != 0)
			return -1;
		if (db_query_one(db, "PRAGMA user_version", &version, NULL, 0, err, err_len) != 0 ||
		    db_refuse_newer(path, version, err, err_len) != 0)
			goto fail;
		if (version == (int64_t)ARRAY_LEN(migrations))
			break;
		if (db_exec(db, migrations[version], "migrating the schema", err, err_len) != 0)
			goto fail;
		char set_version[48];
		snprintf(set_version, sizeof set_version, "PRAGMA user_version = %lld",
			 (long long)version + 1);
		if (db_exec(db, set_version, "setting the schema version", err, err_len) != 0 ||
		    db_exec(db, "COMMIT", "committing a migration", err, err_len) != 0)
			goto fail;
		log_info("store: %s migrated to schema version %lld", path, (long long)version + 1);
	}
	return db_exec(db, "COMMIT", "ending the migration check", err, err_len);
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/*
 * WAL lets readers (the CLI, an operator's sqlite3) run beside the agent;
 * synchronous=FULL because a commit here is the point after which the Kafka
 * offset is stored: NORMAL could lose the last commits on power loss.
 */
static int db_configure(sqlite3 *db, const char *path, char *err, size_t err_len)
{
	char mode[16];
	if (db_query_one(db, "PRAGMA journal_mode = WAL", NULL, mode, sizeof mode, err, err_len) !=
	    0)
		return -1;
	if (strcmp(mode, "wal") != 0)
		log_warn(
		    "store: %s cannot use WAL (journal mode is %s); readers will block writers",
		    path, mode);
	if (db_exec(db, "PRAGMA synchronous = FULL", "setting synchronous", err, err_len) != 0 ||
	    db_exec(db, "PRAGMA foreign_keys = ON", "enabling foreign keys", err, err_len) != 0)
		return -1;
	return 0;
}

static char *runs_list_sql(unsigned mask)
{
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_adds(&sb, "SELECT " RUN_COLUMNS " FROM runs WHERE id < ?4");
	if (mask & RUNS_BY_PIPELINE)
		strbuf_adds(&sb, " AND pipeline = ?1");
	if (mask & RUNS_BY_STATUS)
		strbuf_adds(&sb, " AND status = ?2");
	if (mask & RUNS_BY_REPO)
		strbuf_adds(&sb, " AND repo = ?3");
	strbuf_adds(&sb, " ORDER BY id DESC LIMIT ?5");
	return strbuf_detach(&sb);
}

static int stmts_prepare(struct store *s, char *err, size_t err_len)
{
	for (size_t i = 0; i < ARRAY_LEN(stmt_specs); i++) {
		const struct stmt_spec *spec = &stmt_specs[i];
		if (sqlite3_prepare_v3(s->db, spec->sql, -1, SQLITE_PREPARE_PERSISTENT,
				       stmt_slot(s, spec), NULL) != SQLITE_OK) {
			snprintf(err, err_len, "preparing \"%s\" failed: %s", spec->sql,
				 sqlite3_errmsg(s->db));
			return -1;
		}
	}
	for (unsigned mask = 0; mask < RUNS_LIST_VARIANTS; mask++) {
		char *sql = runs_list_sql(mask);
		int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
					    &s->runs_list[mask], NULL);
		if (rc != SQLITE_OK)
			snprintf(err, err_len, "preparing \"%s\" failed: %s", sql,
				 sqlite3_errmsg(s->db));
		free(sql);
		if (rc != SQLITE_OK)
			return -1;
	}
	return 0;
}

/*
 * Creates state_dir if needed, opens or creates drover.db, refuses a schema
 * newer than this code, migrates an older one, and prepares every statement.
 * On failure returns NULL with one line in err and nothing logged.
 */
struct store *store_open(const char *state_dir, char *err, size_t err_len)
{
	if (mkdir_p(state_dir, 0700) != 0) {
		snprintf(err, err_len, "cannot create state directory %s: %s", state_dir,
			 strerror(errno));
		return NULL;
	}
	char *path = xasprintf("%s/drover.db", state_dir);
	struct store *s = xcalloc(1, sizeof *s);
	int64_t version;
	int rc = sqlite3_open_v2(
	    path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, err_len, "cannot open %s: %s", path,
			 s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	/* Checked before anything writes, so a newer database is left untouched. */
	if (db_query_one(s->db, "PRAGMA user_version", &version, NULL, 0, err, err_len) != 0 ||
	    db_refuse_newer(path, version, err, err_len) != 0 ||
	    db_configure(s->db, path, err, err_len) != 0 ||
	    db_migrate(s->db, path, err, err_len) != 0 || stmts_prepare(s, err, err_len) != 0)
		goto fail;
	free(path);
	return s;
fail:
	free(path);
	store_close(s);
	return NULL;
}

static void tx_end_with_rollback(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		stmt_run(s, s->tx_rollback, "rolling back a transaction");
	s->is_tx_failed = false;
}

/* Rolls back a transaction left open, finalizes every statement, closes. */
void store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->tx_depth > 0) {
		log_warn("store: closing with a transaction open (depth %d); rolling it back",
			 s->tx_depth);
		s->tx_depth = 0;
		tx_end_with_rollback(s);
	}
	for (size_t i = 0; i < ARRAY_LEN(stmt_specs); i++)
		sqlite3_finalize(*stmt_slot(s, &stmt_specs[i]));
	for (unsigned mask = 0; mask < RUNS_LIST_VARIANTS; mask++)
		sqlite3_finalize(s->runs_list[mask]);
	if (s->db != NULL && sqlite3_close(s->db) != SQLITE_OK)
		log_error("store: closing the database failed: %s", sqlite3_errmsg(s->db));
	strbuf_free(&s->body_text);
	free(s);
}

/* ---- transactions ---- */

/* Only the outermost begin reaches SQLite, as BEGIN IMMEDIATE (the write lock now). */
int store_begin(struct store *s)
{
	if (s->tx_depth == 0) {
		if (stmt_run(s, s->tx_begin, "beginning a transaction") != 0)
			return -1;
		s->is_tx_failed = false;
	}
	s->tx_depth++;
	return 0;
}

/*
 * An inner commit only counts down; it returns -1 when the transaction is
 * already doomed. The outermost commit reaches SQLite unless an inner
 * rollback doomed it (or SQLite rolled it back itself), in which case it
 * rolls back and returns -1: nothing of it was kept.
 */
int store_commit(struct store *s)
{
	if (s->tx_depth == 0) {
		log_error("store: commit without a transaction");
		return -1;
	}
	if (--s->tx_depth > 0)
		return s->is_tx_failed ? -1 : 0;
	if (s->is_tx_failed) {
		tx_end_with_rollback(s);
		return -1;
	}
	if (sqlite3_get_autocommit(s->db)) {
		log_error("store: SQLite rolled the transaction back after an error; nothing kept");
		return -1;
	}
	if (stmt_run(s, s->tx_commit, "committing a transaction") != 0) {
		tx_end_with_rollback(s);
		return -1;
	}
	return 0;
}

/*
 * A rollback at any depth dooms the whole outermost transaction. SQLite's
 * ROLLBACK is issued when the outermost level ends, so statements run in
 * between still belong to the doomed transaction and never autocommit.
 */
void store_rollback(struct store *s)
{
	if (s->tx_depth == 0) {
		log_error("store: rollback without a transaction");
		return;
	}
	s->is_tx_failed = true;
	if (--s->tx_depth > 0)
		return;
	tx_end_with_rollback(s);
}

/* ---- events ---- */

static const char *body_string(const json_t *body, const char *key)
{
	return json_is_object(body) ? json_string_value(json_object_get(body, key)) : NULL;
}

/*
 * Inserts the event unless its id is known. The kind/source/repo columns are
 * copied from the body for queries; the body itself is kept as compact JSON.
 * A negative partition or offset (no Kafka origin) is stored as NULL.
 */
int store_event_insert(struct store *s, const char *id, const json_t *body, const char *outcome,
		       const char *error, const char *topic, int32_t partition, int64_t offset)
{
	return store_event_insert_held(s, id, body, outcome, error, topic, partition, offset,
				       false);
}

int store_event_insert_held(struct store *s, const char *id, const json_t *body,
			    const char *outcome, const char *error, const char *topic,
			    int32_t partition, int64_t offset, bool is_held)
{
	sqlite3_stmt *st = s->event_insert;
	/* The text is encoded into a buffer kept from event to event. */
	struct strbuf *text = &s->body_text;
	strbuf_reset(text);
	if (body != NULL && (jsonenc_compact(body, text) != 0 || text->len > INT_MAX)) {
		log_error("store: event %s: its body cannot be encoded as JSON", id);
		return -1;
	}
	int rc =
	    bind_text(st, 1, id) || bind_text(st, 2, body_string(body, "kind")) ||
	    bind_text(st, 3, body_string(body, "source")) ||
	    bind_text(st, 4, body_string(body, "repo")) || bind_text(st, 5, outcome) ||
	    bind_text(st, 6, error) ||
	    (body == NULL ? sqlite3_bind_null(st, 7)
			  : sqlite3_bind_text(st, 7, text->data, (int)text->len, SQLITE_STATIC)) ||
	    bind_text(st, 8, topic) ||
	    (partition < 0 ? sqlite3_bind_null(st, 9) : sqlite3_bind_int(st, 9, partition)) ||
	    (offset < 0 ? sqlite3_bind_null(st, 10) : bind_int64(st, 10, offset)) ||
	    bind_int64(st, 11, now_ms()) || sqlite3_bind_int(st, 12, is_held ? 1 : 0);
	if (rc != 0)
		rc = stmt_fail(s, st, "binding an event insert");
	else if (stmt_run(s, st, "inserting an event") != 0)
		rc = -1;
	else
		rc = sqlite3_changes(s->db) == 0 ? 1 : 0;
	/* An outsized body does not keep its buffer. */
	if (text->cap > 256 * 1024)
		strbuf_free(text);
	return rc;
}

json_t *store_event_get(struct store *s, const char *id)
{
	sqlite3_stmt *st = s->event_get;
	if (bind_text(st, 1, id) != SQLITE_OK) {
		stmt_fail(s, st, "binding an event lookup");
		return NULL;
	}
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		stmt_done(st);
		return NULL;
	}
	if (rc != SQLITE_ROW) {
		stmt_fail(s, st, "reading an event");
		return NULL;
	}
	json_t *body = NULL;
	const unsigned char *text = sqlite3_column_text(st, 0);
	if (text != NULL) {
		json_error_t jerr;
		body = json_loads((const char *)text, JSON_DECODE_ANY, &jerr);
		if (body == NULL)
			log_error("store: the stored body of event %s is not JSON: %s", id,
				  jerr.text);
	}
	stmt_done(st);
	return body;
}

/* False on a database error too (logged): the caller then processes it again. */
bool store_event_exists(struct store *s, const char *id)
{
	sqlite3_stmt *st = s->event_exists;
	if (bind_text(st, 1, id) != SQLITE_OK) {
		stmt_fail(s, st, "binding an event lookup");
		return false;
	}
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		stmt_fail(s, st, "looking up an event");
		return false;
	}
	stmt_done(st);
	return rc == SQLITE_ROW;
}

int store_events_held(struct store *s, struct store_held_event **events, size_t *n)
{
	sqlite3_stmt *st = s->events_held;
	struct store_held_event *v = NULL;
	size_t count = 0, cap = 0;
	int rc;
	*events = NULL;
	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = xgrow(v, &cap, count, sizeof *v);
		struct store_held_event *e = &v[count++];
		e->id = column_strdup(st, 0);
		e->topic = column_strdup(st, 1);
		e->partition =
		    sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 2);
		e->offset =
		    sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
	}
	if (rc != SQLITE_DONE) {
		store_held_events_free(v, count);
		return stmt_fail(s, st, "listing held events");
	}
	stmt_done(st);
	*events = v;
	*n = count;
	return 0;
}

void store_held_events_free(struct store_held_event *events, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(events[i].id);
		free(events[i].topic);
	}
	free(events);
}

int store_event_release(struct store *s, const char *id, int64_t **run_ids, size_t *n)
{
	*run_ids = NULL;
	*n = 0;
	if (bind_text(s->event_release, 1, id) != SQLITE_OK)
		return stmt_fail(s, s->event_release, "binding an event release");
	if (stmt_run(s, s->event_release, "releasing an event") != 0)
		return -1;
	sqlite3_stmt *st = s->event_runs;
	if (bind_text(st, 1, id) != SQLITE_OK)
		return stmt_fail(s, st, "binding an event's runs query");
	return stmt_ids(s, st, "listing an event's runs", run_ids, n);
}

int store_event_drop(struct store *s, const char *id)
{
	/* Stages, attempts and outputs go with their runs (ON DELETE CASCADE). */
	if (bind_text(s->event_drop_runs, 1, id) != SQLITE_OK)
		return stmt_fail(s, s->event_drop_runs, "binding an event drop");
	if (stmt_run(s, s->event_drop_runs, "dropping an event's runs") != 0)
		return -1;
	if (bind_text(s->event_drop, 1, id) != SQLITE_OK)
		return stmt_fail(s, s->event_drop, "binding an event drop");
	return stmt_run(s, s->event_drop, "dropping an event");
}

/* ---- runs and stages ---- */

/*
 * Inserts a run and sets run->id. A created_at of 0 becomes now and an
 * attempt of 0 becomes 1; both are written back into *run.
 */
int store_run_insert(struct store *s, struct store_run *run)
{
	sqlite3_stmt *st = s->run_insert;
	if (run->created_at == 0)
		run->created_at = now_ms();
	if (run->attempt == 0)
		run->attempt = 1;
	if (bind_text(st, 1, run->pipeline) || bind_status(st, 2, run->status) ||
	    bind_text(st, 3, run->repo) || bind_text(st, 4, run->sha) ||
	    bind_text(st, 5, run->branch) || bind_text(st, 6, run->event_id) ||
	    bind_text(st, 7, run->event_kind) || bind_text(st, 8, run->concurrency_group) ||
	    bind_text(st, 9, run->lock_name) || bind_text(st, 10, run->definition) ||
	    bind_text(st, 11, run->workspace) || sqlite3_bind_int(st, 12, run->attempt) ||
	    bind_time(st, 13, run->created_at) || bind_time(st, 14, run->started_at) ||
	    bind_time(st, 15, run->finished_at))
		return stmt_fail(s, st, "binding a run insert");
	if (store_begin(s) != 0)
		return -1;
	if (stmt_run(s, st, "inserting a run") != 0)
		goto fail;
	run->id = sqlite3_last_insert_rowid(s->db);
	/* Its first attempt: the original, asked for by its event. */
	struct store_run_attempt first = {.run_id = run->id,
					  .attempt = run->attempt,
					  .requested_at = run->created_at,
					  .mode = "original"};
	if (store_run_attempt_add(s, &first) != 0)
		goto fail;
	return store_commit(s);
fail:
	store_rollback(s);
	return -1;
}

/* Binds a run attempt to the ten parameters of run_attempt_add/describe and runs it. */
static int run_attempt_write(struct store *s, sqlite3_stmt *st, const struct store_run_attempt *a)
{
	char *stages = a->stages != NULL ? json_dumps(a->stages, JSON_COMPACT) : NULL;
	int rc = 0;
	if (bind_int64(st, 1, a->run_id) || sqlite3_bind_int(st, 2, a->attempt) ||
	    bind_text(st, 3, a->requested_by) || bind_text(st, 4, a->reason) ||
	    bind_int64(st, 5, a->requested_at) || bind_text(st, 6, a->mode) ||
	    bind_text(st, 7, stages) || sqlite3_bind_int(st, 8, a->is_latest_pipeline) ||
	    bind_text(st, 9, a->replaced_definition) || bind_text(st, 10, a->origin))
		rc = stmt_fail(s, st, "binding a run attempt");
	else
		rc = stmt_run(s, st, "recording a run attempt");
	free(stages);
	return rc;
}

int store_run_attempt_add(struct store *s, const struct store_run_attempt *a)
{
	return run_attempt_write(s, s->run_attempt_add, a);
}

int store_run_attempt_describe(struct store *s, const struct store_run_attempt *a)
{
	return run_attempt_write(s, s->run_attempt_describe, a);
}

int store_event_set_outcome(struct store *s, const char *id, const char *outcome, const char *error)
{
	sqlite3_stmt *st = s->event_set_outcome;
	if (bind_text(st, 1, id) || bind_text(st, 2, outcome) || bind_text(st, 3, error))
		return stmt_fail(s, st, "binding an event outcome");
	return stmt_run(s, st, "setting an event's outcome");
}

int store_run_set_definition(struct store *s, int64_t run_id, const char *definition)
{
	sqlite3_stmt *st = s->run_set_definition;
	if (bind_int64(st, 1, run_id) || bind_text(st, 2, definition))
		return stmt_fail(s, st, "binding a run's definition");
	return stmt_run(s, st, "setting a run's definition");
}

int store_stage_delete(struct store *s, int64_t run_id, const char *stage)
{
	sqlite3_stmt *st = s->stage_delete;
	if (bind_int64(st, 1, run_id) || bind_text(st, 2, stage))
		return stmt_fail(s, st, "binding a stage delete");
	return stmt_run(s, st, "deleting a stage");
}

/* -1 (logged) when the run does not exist. */
int store_run_update(struct store *s, const struct store_run *run)
{
	sqlite3_stmt *st = s->run_update;
	if (bind_int64(st, 1, run->id) || bind_status(st, 2, run->status) ||
	    bind_text(st, 3, run->sha) || bind_text(st, 4, run->workspace) ||
	    sqlite3_bind_int(st, 5, run->attempt) || bind_time(st, 6, run->started_at) ||
	    bind_time(st, 7, run->finished_at))
		return stmt_fail(s, st, "binding a run update");
	if (stmt_run(s, st, "updating a run") != 0)
		return -1;
	if (sqlite3_changes(s->db) == 0) {
		log_error("store: updating run %lld failed: no such run", (long long)run->id);
		return -1;
	}
	return 0;
}

/* A stage's run attempt and first attempt: 0 (not set) reads as 1. */
static int stage_run_attempt(const struct store_stage *stage)
{
	return stage->run_attempt > 0 ? stage->run_attempt : 1;
}

static int stage_first_attempt(const struct store_stage *stage)
{
	return stage->first_attempt > 0 ? stage->first_attempt : 1;
}

static int stage_attempt_record(struct store *s, const struct store_stage *stage)
{
	sqlite3_stmt *st = s->stage_attempt_upsert;
	if (bind_int64(st, 1, stage->run_id) || bind_text(st, 2, stage->name) ||
	    sqlite3_bind_int(st, 3, stage->attempt) || bind_status(st, 4, stage->status) ||
	    bind_exit_code(st, 5, stage->exit_code) || bind_time(st, 6, stage->started_at) ||
	    bind_time(st, 7, stage->finished_at) || bind_text(st, 8, stage->summary) ||
	    sqlite3_bind_int(st, 9, stage_run_attempt(stage)))
		return stmt_fail(s, st, "binding a stage attempt");
	return stmt_run(s, st, "recording a stage attempt");
}

/* Inserts a stage (and its attempt's history row when it has started one). */
int store_stage_insert(struct store *s, const struct store_stage *stage)
{
	sqlite3_stmt *st = s->stage_insert;
	if (store_begin(s) != 0)
		return -1;
	if (bind_int64(st, 1, stage->run_id) || bind_text(st, 2, stage->name) ||
	    sqlite3_bind_int(st, 3, stage->idx) || bind_status(st, 4, stage->status) ||
	    sqlite3_bind_int(st, 5, stage->attempt) || bind_exit_code(st, 6, stage->exit_code) ||
	    bind_time(st, 7, stage->started_at) || bind_time(st, 8, stage->finished_at) ||
	    bind_text(st, 9, stage->summary) || bind_text(st, 10, stage->resume_token) ||
	    sqlite3_bind_int(st, 11, stage_run_attempt(stage)) ||
	    sqlite3_bind_int(st, 12, stage_first_attempt(stage))) {
		stmt_fail(s, st, "binding a stage insert");
		goto fail;
	}
	if (stmt_run(s, st, "inserting a stage") != 0)
		goto fail;
	if (stage->attempt >= 1 && stage_attempt_record(s, stage) != 0)
		goto fail;
	return store_commit(s);
fail:
	store_rollback(s);
	return -1;
}

/*
 * Writes the stage's current state and, when it has an attempt (>= 1), the
 * history row of that attempt, in one transaction. -1 when there is no such
 * stage.
 */
int store_stage_update(struct store *s, const struct store_stage *stage)
{
	sqlite3_stmt *st = s->stage_update;
	if (store_begin(s) != 0)
		return -1;
	if (bind_int64(st, 1, stage->run_id) || bind_text(st, 2, stage->name) ||
	    bind_status(st, 3, stage->status) || sqlite3_bind_int(st, 4, stage->attempt) ||
	    bind_exit_code(st, 5, stage->exit_code) || bind_time(st, 6, stage->started_at) ||
	    bind_time(st, 7, stage->finished_at) || bind_text(st, 8, stage->summary) ||
	    bind_text(st, 9, stage->resume_token) || sqlite3_bind_int(st, 10, stage->idx) ||
	    sqlite3_bind_int(st, 11, stage_run_attempt(stage)) ||
	    sqlite3_bind_int(st, 12, stage_first_attempt(stage))) {
		stmt_fail(s, st, "binding a stage update");
		goto fail;
	}
	if (stmt_run(s, st, "updating a stage") != 0)
		goto fail;
	if (sqlite3_changes(s->db) == 0) {
		log_error("store: updating stage %s of run %lld failed: no such stage",
			  stage->name != NULL ? stage->name : "(null)", (long long)stage->run_id);
		goto fail;
	}
	if (stage->attempt >= 1 && stage_attempt_record(s, stage) != 0)
		goto fail;
	return store_commit(s);
fail:
	store_rollback(s);
	return -1;
}

static void run_from_row(sqlite3_stmt *st, struct store_run *run)
{
	run->id = sqlite3_column_int64(st, 0);
	run->pipeline = column_strdup(st, 1);
	run->status = column_status(st, 2);
	run->repo = column_strdup(st, 3);
	run->sha = column_strdup(st, 4);
	run->branch = column_strdup(st, 5);
	run->event_id = column_strdup(st, 6);
	run->event_kind = column_strdup(st, 7);
	run->concurrency_group = column_strdup(st, 8);
	run->lock_name = column_strdup(st, 9);
	run->definition = column_strdup(st, 10);
	run->workspace = column_strdup(st, 11);
	run->attempt = sqlite3_column_int(st, 12);
	run->created_at = sqlite3_column_int64(st, 13);
	run->started_at = sqlite3_column_int64(st, 14);
	run->finished_at = sqlite3_column_int64(st, 15);
}

/* 0 and *run filled, 1 when there is no such run, -1 on error (logged). */
static int run_read(struct store *s, int64_t id, struct store_run *run)
{
	sqlite3_stmt *st = s->run_get;
	if (bind_int64(st, 1, id) != SQLITE_OK)
		return stmt_fail(s, st, "binding a run lookup");
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		stmt_done(st);
		return 1;
	}
	if (rc != SQLITE_ROW)
		return stmt_fail(s, st, "reading a run");
	run_from_row(st, run);
	stmt_done(st);
	return 0;
}

/* The stages of a run ordered by idx; *stages is NULL when there are none. */
static int stages_read(struct store *s, int64_t run_id, struct store_stage **stages, size_t *n)
{
	sqlite3_stmt *st = s->stages_get;
	struct store_stage *v = NULL;
	size_t count = 0, cap = 0;
	int rc;
	*stages = NULL;
	*n = 0;
	if (bind_int64(st, 1, run_id) != SQLITE_OK)
		return stmt_fail(s, st, "binding a stage lookup");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = xgrow(v, &cap, count, sizeof *v);
		struct store_stage *stage = &v[count++];
		stage->run_id = sqlite3_column_int64(st, 0);
		stage->name = column_strdup(st, 1);
		stage->idx = sqlite3_column_int(st, 2);
		stage->status = column_status(st, 3);
		stage->attempt = sqlite3_column_int(st, 4);
		stage->exit_code = column_exit_code(st, 5);
		stage->started_at = sqlite3_column_int64(st, 6);
		stage->finished_at = sqlite3_column_int64(st, 7);
		stage->summary = column_strdup(st, 8);
		stage->resume_token = column_strdup(st, 9);
		stage->run_attempt = sqlite3_column_int(st, 10);
		stage->first_attempt = sqlite3_column_int(st, 11);
	}
	if (rc != SQLITE_DONE) {
		store_stages_free(v, count);
		return stmt_fail(s, st, "reading stages");
	}
	stmt_done(st);
	*stages = v;
	*n = count;
	return 0;
}

/*
 * Fills *run (and, when stages is not NULL, the stages ordered by idx).
 * On any failure, including "no such run" (logged), returns -1 with *run
 * zeroed and no stages, so clearing it is always safe.
 */
int store_run_load(struct store *s, int64_t id, struct store_run *run, struct store_stage **stages,
		   size_t *n_stages)
{
	memset(run, 0, sizeof *run);
	if (stages != NULL) {
		*stages = NULL;
		*n_stages = 0;
	}
	int rc = run_read(s, id, run);
	if (rc == 1)
		log_error("store: loading run %lld failed: no such run", (long long)id);
	if (rc != 0)
		return -1;
	if (stages != NULL && stages_read(s, id, stages, n_stages) != 0) {
		store_run_clear(run);
		return -1;
	}
	return 0;
}

void store_run_clear(struct store_run *run)
{
	if (run == NULL)
		return;
	free(run->pipeline);
	free(run->repo);
	free(run->sha);
	free(run->branch);
	free(run->event_id);
	free(run->event_kind);
	free(run->concurrency_group);
	free(run->lock_name);
	free(run->definition);
	free(run->workspace);
	memset(run, 0, sizeof *run);
}

void store_stages_free(struct store_stage *stages, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(stages[i].name);
		free(stages[i].summary);
		free(stages[i].resume_token);
	}
	free(stages);
}

int store_runs_unfinished(struct store *s, int64_t **ids, size_t *n)
{
	sqlite3_stmt *st = s->runs_unfinished;
	*ids = NULL;
	*n = 0;
	if (bind_status(st, 1, STATUS_QUEUED) || bind_status(st, 2, STATUS_RUNNING))
		return stmt_fail(s, st, "binding the unfinished-runs query");
	return stmt_ids(s, st, "listing unfinished runs", ids, n);
}

/* ---- process groups of running stages ---- */

int store_stage_proc_add(struct store *s, const struct store_stage_proc *proc)
{
	sqlite3_stmt *st = s->stage_proc_add;
	if (bind_int64(st, 1, proc->pgid) || bind_int64(st, 2, (int64_t)proc->start_time) ||
	    bind_int64(st, 3, proc->run_id) || bind_text(st, 4, proc->stage) ||
	    sqlite3_bind_int(st, 5, proc->attempt) || bind_int64(st, 6, now_ms()))
		return stmt_fail(s, st, "binding a stage process");
	return stmt_run(s, st, "recording a stage process");
}

int store_stage_procs_delete(struct store *s, int64_t run_id, const char *stage)
{
	sqlite3_stmt *st = s->stage_procs_delete;
	if (bind_int64(st, 1, run_id) || bind_text(st, 2, stage))
		return stmt_fail(s, st, "binding a stage process delete");
	return stmt_run(s, st, "forgetting a stage's processes");
}

int store_stage_procs_list(struct store *s, struct store_stage_proc **procs, size_t *n)
{
	sqlite3_stmt *st = s->stage_procs_list;
	struct store_stage_proc *v = NULL;
	size_t count = 0, cap = 0;
	int rc;
	*procs = NULL;
	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = xgrow(v, &cap, count, sizeof *v);
		struct store_stage_proc *p = &v[count++];
		p->run_id = sqlite3_column_int64(st, 0);
		p->stage = column_strdup(st, 1);
		p->attempt = sqlite3_column_int(st, 2);
		p->pgid = sqlite3_column_int64(st, 3);
		p->start_time = (uint64_t)sqlite3_column_int64(st, 4);
	}
	if (rc != SQLITE_DONE) {
		store_stage_procs_free(v, count);
		return stmt_fail(s, st, "listing stage processes");
	}
	stmt_done(st);
	*procs = v;
	*n = count;
	return 0;
}

void store_stage_procs_free(struct store_stage_proc *procs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(procs[i].stage);
	free(procs);
}

int store_stage_procs_clear(struct store *s)
{
	return stmt_run(s, s->stage_procs_clear, "forgetting every stage process");
}

/* ---- outputs ---- */

int store_output_set(struct store *s, int64_t run_id, const char *stage, const char *key,
		     const char *value)
{
	sqlite3_stmt *st = s->output_set;
	if (bind_int64(st, 1, run_id) || bind_text(st, 2, stage) || bind_text(st, 3, key) ||
	    bind_text(st, 4, value))
		return stmt_fail(s, st, "binding an output");
	return stmt_run(s, st, "setting an output");
}

int store_outputs_delete(struct store *s, int64_t run_id, const char *stage)
{
	sqlite3_stmt *st = s->outputs_delete;
	if (bind_int64(st, 1, run_id) || bind_text(st, 2, stage))
		return stmt_fail(s, st, "binding an outputs delete");
	return stmt_run(s, st, "deleting a stage's outputs");
}

/* ---- JSON ---- */

/*
 * A JSON string for text read back from the database. Text that is not valid
 * UTF-8 (a plugin's summary of raw process output, say) keeps its ASCII and
 * has every other byte replaced by '?', so the API never drops a field.
 */
static json_t *json_text(const char *s)
{
	if (s == NULL)
		return json_null();
	json_t *j = json_string(s);
	if (j != NULL)
		return j;
	char *copy = xstrdup(s);
	for (char *p = copy; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static json_t *json_time(int64_t epoch_ms)
{
	if (epoch_ms == 0)
		return json_null();
	char buf[40];
	time_format_iso8601(epoch_ms, buf, sizeof buf);
	return json_string(buf);
}

/* Sets obj[key] = value (consumed) even when key is not valid UTF-8. */
static void json_set_any_key(json_t *obj, const char *key, json_t *value)
{
	json_t *probe = json_string(key);
	if (probe != NULL) {
		json_decref(probe);
		json_object_set_new(obj, key, value);
		return;
	}
	probe = json_text(key);
	json_object_set_new(obj, json_string_value(probe), value);
	json_decref(probe);
}

/* Every output of a run, grouped by stage; NULL on error (logged). */
json_t *store_outputs_get(struct store *s, int64_t run_id)
{
	sqlite3_stmt *st = s->outputs_get;
	if (bind_int64(st, 1, run_id) != SQLITE_OK) {
		stmt_fail(s, st, "binding an outputs lookup");
		return NULL;
	}
	json_t *outputs = json_object();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *stage = (const char *)sqlite3_column_text(st, 0);
		const char *key = (const char *)sqlite3_column_text(st, 1);
		const char *value = (const char *)sqlite3_column_text(st, 2);
		json_t *of_stage = json_object_get(outputs, stage);
		if (of_stage == NULL) {
			of_stage = json_object();
			json_set_any_key(outputs, stage, of_stage);
		}
		json_set_any_key(of_stage, key, json_text(value));
	}
	if (rc != SQLITE_DONE) {
		json_decref(outputs);
		stmt_fail(s, st, "reading outputs");
		return NULL;
	}
	stmt_done(st);
	return outputs;
}

static json_t *run_to_json(const struct store_run *run, const struct store_stage *stages,
			   size_t n_stages)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_integer(run->id));
	json_object_set_new(o, "pipeline", json_text(run->pipeline));
	json_object_set_new(o, "status", json_string(status_name(run->status)));
	json_object_set_new(o, "repo", json_text(run->repo));
	json_object_set_new(o, "sha", json_text(run->sha));
	json_object_set_new(o, "branch", json_text(run->branch));
	json_object_set_new(o, "event_id", json_text(run->event_id));
	json_object_set_new(o, "event_kind", json_text(run->event_kind));
	json_object_set_new(o, "created_at", json_time(run->created_at));
	json_object_set_new(o, "finished_at", json_time(run->finished_at));
	json_t *arr = json_array();
	for (size_t i = 0; i < n_stages; i++) {
		const struct store_stage *stage = &stages[i];
		json_t *j = json_object();
		json_object_set_new(j, "name", json_text(stage->name));
		json_object_set_new(j, "status", json_string(status_name(stage->status)));
		json_object_set_new(j, "attempt", json_integer(stage->attempt));
		json_object_set_new(j, "exit_code",
				    stage->exit_code < 0 ? json_null()
							 : json_integer(stage->exit_code));
		json_object_set_new(j, "started_at", json_time(stage->started_at));
		json_object_set_new(j, "finished_at", json_time(stage->finished_at));
		json_object_set_new(j, "summary", json_text(stage->summary));
		json_array_append_new(arr, j);
	}
	json_object_set_new(o, "stages", arr);
	return o;
}

/* The run's attempts, oldest first, as the API shows them; NULL on error. */
static json_t *run_attempts_json(struct store *s, int64_t run_id)
{
	sqlite3_stmt *st = s->run_attempts_get;
	if (bind_int64(st, 1, run_id) != SQLITE_OK) {
		stmt_fail(s, st, "binding a run attempts lookup");
		return NULL;
	}
	json_t *arr = json_array();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *stages = (const char *)sqlite3_column_text(st, 5);
		json_t *names = stages != NULL ? json_loads(stages, 0, NULL) : NULL;
		const char *origin_text = (const char *)sqlite3_column_text(st, 7);
		json_t *origin = origin_text != NULL ? json_loads(origin_text, 0, NULL) : NULL;
		json_array_append_new(
		    arr, json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,s:b,s:o}", "attempt",
				   sqlite3_column_int(st, 0), "requested_by",
				   json_text((const char *)sqlite3_column_text(st, 1)), "reason",
				   json_text((const char *)sqlite3_column_text(st, 2)),
				   "requested_at", json_time(sqlite3_column_int64(st, 3)), "mode",
				   json_text((const char *)sqlite3_column_text(st, 4)), "stages",
				   names != NULL ? names : json_null(), "latest_pipeline",
				   sqlite3_column_int(st, 6) != 0, "origin",
				   origin != NULL ? origin : json_null()));
	}
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		stmt_fail(s, st, "reading run attempts");
		return NULL;
	}
	stmt_done(st);
	return arr;
}

/* Every attempt of one stage, oldest first; NULL on error. */
static json_t *stage_attempts_json(struct store *s, int64_t run_id, const char *stage)
{
	sqlite3_stmt *st = s->stage_attempts_get;
	if (bind_int64(st, 1, run_id) || bind_text(st, 2, stage)) {
		stmt_fail(s, st, "binding a stage attempts lookup");
		return NULL;
	}
	json_t *arr = json_array();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int exit_code = column_exit_code(st, 3);
		json_array_append_new(
		    arr,
		    json_pack("{s:i,s:i,s:s,s:o,s:o,s:o}", "attempt", sqlite3_column_int(st, 0),
			      "run_attempt", sqlite3_column_int(st, 1), "status",
			      status_name(column_status(st, 2)), "exit_code",
			      exit_code < 0 ? json_null() : json_integer(exit_code), "started_at",
			      json_time(sqlite3_column_int64(st, 4)), "finished_at",
			      json_time(sqlite3_column_int64(st, 5))));
	}
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		stmt_fail(s, st, "reading stage attempts");
		return NULL;
	}
	stmt_done(st);
	return arr;
}

/*
 * One run in full: run_to_json plus "attempt", "attempts" (the run's
 * attempts) and, on each stage, "run_attempt" (the run attempt its result
 * belongs to) and "attempts" (every attempt of the stage).
 */
json_t *store_run_json(struct store *s, int64_t id)
{
	struct store_run run = {0};
	struct store_stage *stages = NULL;
	size_t n = 0;
	if (run_read(s, id, &run) != 0)
		return NULL;
	json_t *j = NULL;
	json_t *attempts = NULL;
	if (stages_read(s, id, &stages, &n) != 0 || (attempts = run_attempts_json(s, id)) == NULL)
		goto out;
	j = run_to_json(&run, stages, n);
	json_object_set_new(j, "attempt", json_integer(run.attempt));
	json_object_set_new(j, "attempts", attempts);
	json_t *arr = json_object_get(j, "stages");
	for (size_t i = 0; i < n; i++) {
		json_t *sj = json_array_get(arr, i);
		json_t *sa = stage_attempts_json(s, id, stages[i].name);
		json_object_set_new(sj, "run_attempt", json_integer(stage_run_attempt(&stages[i])));
		json_object_set_new(sj, "attempts", sa != NULL ? sa : json_array());
	}
out:
	store_run_clear(&run);
	store_stages_free(stages, n);
	return j;
}

/*
 * Newest first, at most filter->limit (0: 100, capped at 1000) runs with
 * id < before_id, each with its stages. An unknown status matches nothing.
 * NULL filter means no filter. NULL on error (logged).
 */
json_t *store_runs_json(struct store *s, const struct store_run_filter *filter)
{
	const struct store_run_filter none = {0};
	if (filter == NULL)
		filter = &none;
	unsigned mask = (filter->pipeline != NULL ? RUNS_BY_PIPELINE : 0) |
			(filter->status != NULL ? RUNS_BY_STATUS : 0) |
			(filter->repo != NULL ? RUNS_BY_REPO : 0);
	int limit = filter->limit <= 0 ? STORE_RUNS_LIMIT_DEFAULT : filter->limit;
	if (limit > STORE_RUNS_LIMIT_MAX)
		limit = STORE_RUNS_LIMIT_MAX;
	sqlite3_stmt *st = s->runs_list[mask];
	if (bind_text(st, 1, filter->pipeline) || bind_text(st, 2, filter->status) ||
	    bind_text(st, 3, filter->repo) ||
	    bind_int64(st, 4, filter->before_id > 0 ? filter->before_id : INT64_MAX) ||
	    sqlite3_bind_int(st, 5, limit)) {
		stmt_fail(s, st, "binding the run list");
		return NULL;
	}
	json_t *arr = json_array();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_run run = {0};
		struct store_stage *stages;
		size_t n;
		run_from_row(st, &run);
		if (stages_read(s, run.id, &stages, &n) != 0) {
			store_run_clear(&run);
			stmt_done(st);
			json_decref(arr);
			return NULL;
		}
		json_array_append_new(arr, run_to_json(&run, stages, n));
		store_run_clear(&run);
		store_stages_free(stages, n);
	}
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		stmt_fail(s, st, "listing runs");
		return NULL;
	}
	stmt_done(st);
	return arr;
}

/* ---- outbox ---- */

/* The new item's id (ids only grow, never reused), or -1. */
int64_t store_outbox_add(struct store *s, const char *topic, const char *key, const char *value,
			 size_t value_len)
{
	return store_outbox_add_full(s, topic, key, key != NULL ? strlen(key) : 0, value, value_len,
				     NULL, 0);
}

/* Binds len bytes at p as a blob (an empty one when len is 0), or NULL when p is NULL. */
static int bind_bytes(sqlite3_stmt *st, int i, const void *p, size_t len)
{
	if (p == NULL)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_blob64(st, i, len > 0 ? p : "", len, SQLITE_STATIC);
}

int64_t store_outbox_add_full(struct store *s, const char *topic, const void *key, size_t key_len,
			      const void *value, size_t value_len, const void *headers,
			      size_t headers_len)
{
	sqlite3_stmt *st = s->outbox_add;
	if (bind_text(st, 1, topic) || bind_bytes(st, 2, key, key_len) ||
	    bind_bytes(st, 3, value, value_len) || bind_int64(st, 4, now_ms()) ||
	    (headers != NULL ? sqlite3_bind_blob64(st, 5, headers, headers_len, SQLITE_STATIC)
			     : sqlite3_bind_null(st, 5)))
		return stmt_fail(s, st, "binding an outbox item");
	if (stmt_run(s, st, "adding an outbox item") != 0)
		return -1;
	return sqlite3_last_insert_rowid(s->db);
}

/* Column i as bytes copied with a NUL after them (*len set), or NULL for SQL NULL. */
static char *column_bytes_dup(sqlite3_stmt *st, int i, size_t *len)
{
	*len = 0;
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return NULL;
	/* A zero-length blob reads as a NULL pointer: the type tells them apart. */
	const void *p = sqlite3_column_blob(st, i);
	size_t n = (size_t)sqlite3_column_bytes(st, i);
	char *copy = xmalloc(n + 1);
	if (n > 0)
		memcpy(copy, p, n);
	copy[n] = '\0';
	*len = n;
	return copy;
}

/* Each key and value is copied with a NUL after its bytes, so text can be used as is. */
int store_outbox_next(struct store *s, int64_t after_id, size_t max,
		      struct store_outbox_item **items, size_t *n)
{
	sqlite3_stmt *st = s->outbox_next;
	struct store_outbox_item *v = NULL;
	size_t count = 0, cap = 0;
	int rc;
	*items = NULL;
	*n = 0;
	if (max == 0)
		return 0;
	if (bind_int64(st, 1, after_id) ||
	    bind_int64(st, 2, max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max))
		return stmt_fail(s, st, "binding the outbox query");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = xgrow(v, &cap, count, sizeof *v);
		struct store_outbox_item *item = &v[count++];
		item->id = sqlite3_column_int64(st, 0);
		item->topic = column_strdup(st, 1);
		item->key = column_bytes_dup(st, 2, &item->key_len);
		item->value = column_bytes_dup(st, 3, &item->value_len);
		item->is_value_null = item->value == NULL;
		if (item->is_value_null)
			item->value = xstrdup("");
		const void *hblob = sqlite3_column_blob(st, 4);
		item->headers_len = (size_t)sqlite3_column_bytes(st, 4);
		item->headers = NULL;
		if (hblob != NULL && item->headers_len > 0) {
			item->headers = xmalloc(item->headers_len);
			memcpy(item->headers, hblob, item->headers_len);
		}
	}
	if (rc != SQLITE_DONE) {
		store_outbox_items_free(v, count);
		return stmt_fail(s, st, "reading the outbox");
	}
	stmt_done(st);
	*items = v;
	*n = count;
	return 0;
}

void store_outbox_items_free(struct store_outbox_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(items[i].topic);
		free(items[i].key);
		free(items[i].value);
		free(items[i].headers);
	}
	free(items);
}

/* Deleting an id that is not there is not an error (acks can repeat). */
int store_outbox_delete(struct store *s, int64_t id)
{
	sqlite3_stmt *st = s->outbox_delete;
	if (bind_int64(st, 1, id) != SQLITE_OK)
		return stmt_fail(s, st, "binding an outbox delete");
	return stmt_run(s, st, "deleting an outbox item");
}

/*
 * One transaction for the lot: a commit (an fsync) per acknowledged record
 * cost more than publishing it. A failure rolls all of them back; they are
 * then only published again, never lost.
 */
int store_outbox_delete_many(struct store *s, const int64_t *ids, size_t n)
{
	if (n == 0)
		return 0;
	if (store_begin(s) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (store_outbox_delete(s, ids[i]) != 0) {
			store_rollback(s);
			return -1;
		}
	}
	return store_commit(s);
}

int64_t store_outbox_count(struct store *s)
{
	sqlite3_stmt *st = s->outbox_count;
	if (sqlite3_step(st) != SQLITE_ROW)
		return stmt_fail(s, st, "counting the outbox");
	int64_t count = sqlite3_column_int64(st, 0);
	stmt_done(st);
	return count;
}

/*
 * A real write, as every transaction of the agent makes one: BEGIN
 * IMMEDIATE (the write lock), the probe row rewritten, COMMIT (a WAL frame
 * written and synced). The lock is waited for STORE_PROBE_BUSY_TIMEOUT_MS
 * only, so a probe answers fast while another process holds it.
 */
int store_check_writable(struct store *s, char *err, size_t err_len)
{
	if (s->tx_depth > 0)
		return 0; /* a transaction of ours is under way: it holds the write lock */
	char *sql = xasprintf("BEGIN IMMEDIATE;"
			      "INSERT OR REPLACE INTO probe (id, checked_at) VALUES (1, %lld);"
			      "COMMIT;",
			      (long long)now_ms());
	char *msg = NULL;
	sqlite3_busy_timeout(s->db, STORE_PROBE_BUSY_TIMEOUT_MS);
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	free(sql);
	if (rc == SQLITE_OK)
		return 0;
	snprintf(err, err_len, "%s", msg != NULL ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* ---- replay commands ---- */

int store_replay_command_add(struct store *s, const struct store_replay_command *c)
{
	sqlite3_stmt *st = s->replay_command_add;
	if (bind_text(st, 1, c->id) || bind_int64(st, 2, c->run_id) ||
	    sqlite3_bind_int(st, 3, c->attempt) || bind_int64(st, 4, c->sent_at) ||
	    bind_text(st, 5, c->topic) || sqlite3_bind_int(st, 6, c->partition) ||
	    bind_int64(st, 7, c->offset))
		return stmt_fail(s, st, "binding a replay command");
	return stmt_run(s, st, "recording a replay command");
}

int store_replay_command_last(struct store *s, int64_t run_id, int attempt,
			      struct store_replay_command *last, int *n)
{
	sqlite3_stmt *st = s->replay_command_last;
	memset(last, 0, sizeof *last);
	*n = 0;
	if (bind_int64(st, 1, run_id) || sqlite3_bind_int(st, 2, attempt))
		return stmt_fail(s, st, "binding a replay command lookup");
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		last->id = column_strdup(st, 0);
		last->run_id = run_id;
		last->attempt = attempt;
		last->sent_at = sqlite3_column_int64(st, 1);
		last->topic = column_strdup(st, 2);
		last->partition = sqlite3_column_int(st, 3);
		last->offset = sqlite3_column_int64(st, 4);
		*n = sqlite3_column_int(st, 5);
	} else if (rc != SQLITE_DONE) {
		return stmt_fail(s, st, "looking up replay commands");
	}
	stmt_done(st);
	return 0;
}

void store_replay_command_clear(struct store_replay_command *c)
{
	free(c->id);
	free(c->topic);
	memset(c, 0, sizeof *c);
}
