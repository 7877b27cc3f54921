/*
 * sqlite — a real third-party C program: SQLite (the amalgamation shipped in
 * better-sqlite3, see guests/build.sh) over wasi-libc and the unix VFS.
 *
 * Opens /data/test.db (the host directory preopened at /data, which must not
 * hold a test.db yet), creates two tables, inserts 1,000 customers and
 * 20,000 orders in four transactions through prepared statements, then runs
 * aggregate, GROUP BY and JOIN queries, an UPDATE and a DELETE, and checks
 * every result against the same numbers computed in C from the generated
 * rows. Finally it closes the database, opens it again and checks that the
 * data persisted (and PRAGMA integrity_check). It yields (crvm_yield)
 * between phases; a VM may also freeze it anywhere inside SQLite.
 *
 * SQLite is built with SQLITE_OMIT_RANDOMNESS, so the journal and database
 * bytes are the same on every run: a test may compare /data/test.db too.
 *
 * Output: a line per result, then "sqlite: ok" (exit 0); failed checks go
 * to stderr and the exit code is 1.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crvm.h"
#include "sqlite3.h"

#define DB_PATH "/data/test.db"
#define N_CUSTOMERS 1000
#define N_REGIONS 7
#define N_ORDERS 20000
#define N_TXNS 4
#define N_SCANNED_CUSTOMERS 300  /* lookups by full table scan, before the index */

static int failures = 0;
static sqlite3 *db;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "sqlite: check failed: " __VA_ARGS__);         \
            fputc('\n', stderr);                                           \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* An SQLite call the rest depends on failed: report and stop. */
static void die_sql(const char *what) {
    fprintf(stderr, "sqlite: %s: %s\n", what, db ? sqlite3_errmsg(db) : "(no db)");
    exit(1);
}

static void exec(const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", sql, err ? err : "?");
        exit(1);
    }
}

static sqlite3_stmt *prepare(const char *sql) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die_sql(sql);
    return st;
}

/* Runs a query returning one row of one integer. */
static int64_t query_int(const char *sql) {
    sqlite3_stmt *st = prepare(sql);
    if (sqlite3_step(st) != SQLITE_ROW) die_sql(sql);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* ---- the data, generated in C so the expected results are known ---------- */

typedef struct { int region; } customer;
typedef struct { int customer_id; int amount; int qty; int alive; } order;

static customer customers[N_CUSTOMERS + 1];   /* 1-based ids */
static order orders[N_ORDERS + 1];

static uint32_t rng_state = 2463534242u;
static uint32_t rng(void) {   /* xorshift32: deterministic, host-independent */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void generate(void) {
    for (int c = 1; c <= N_CUSTOMERS; c++) customers[c].region = (int)(rng() % N_REGIONS);
    for (int o = 1; o <= N_ORDERS; o++) {
        orders[o].customer_id = 1 + (int)(rng() % N_CUSTOMERS);
        orders[o].amount = 1 + (int)(rng() % 10000);
        orders[o].qty = 1 + (int)(rng() % 5);
        orders[o].alive = 1;
    }
}

/* ---- phases -------------------------------------------------------------- */

static void check_per_customer(int n_customers);

static void create_and_fill(void) {
    exec("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
         " region INTEGER NOT NULL)");
    exec("CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL"
         " REFERENCES customers(id), amount INTEGER NOT NULL, qty INTEGER NOT NULL,"
         " note TEXT)");

    sqlite3_stmt *ins = prepare("INSERT INTO customers(id, name, region) VALUES (?1, ?2, ?3)");
    char name[32];
    exec("BEGIN");
    for (int c = 1; c <= N_CUSTOMERS; c++) {
        snprintf(name, sizeof name, "customer-%04d", c);
        sqlite3_bind_int(ins, 1, c);
        sqlite3_bind_text(ins, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(ins, 3, customers[c].region);
        if (sqlite3_step(ins) != SQLITE_DONE) die_sql("insert customer");
        sqlite3_reset(ins);
    }
    exec("COMMIT");
    sqlite3_finalize(ins);
    printf("inserted %d customers\n", N_CUSTOMERS);
    fflush(stdout);
    crvm_yield(1);

    ins = prepare("INSERT INTO orders(id, customer_id, amount, qty, note) VALUES (?1, ?2, ?3, ?4, ?5)");
    char note[48];
    for (int t = 0; t < N_TXNS; t++) {
        exec("BEGIN");
        for (int o = 1 + t * (N_ORDERS / N_TXNS); o <= (t + 1) * (N_ORDERS / N_TXNS); o++) {
            snprintf(note, sizeof note, "order %d of customer %d", o, orders[o].customer_id);
            sqlite3_bind_int(ins, 1, o);
            sqlite3_bind_int(ins, 2, orders[o].customer_id);
            sqlite3_bind_int(ins, 3, orders[o].amount);
            sqlite3_bind_int(ins, 4, orders[o].qty);
            sqlite3_bind_text(ins, 5, note, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(ins) != SQLITE_DONE) die_sql("insert order");
            sqlite3_reset(ins);
        }
        exec("COMMIT");
        printf("inserted orders, transaction %d of %d\n", t + 1, N_TXNS);
        fflush(stdout);
        crvm_yield(2 + t);
    }
    sqlite3_finalize(ins);
    check_per_customer(N_SCANNED_CUSTOMERS);
    exec("CREATE INDEX orders_by_customer ON orders(customer_id)");
    printf("created index orders_by_customer\n");
    fflush(stdout);
}

/* Totals over the rows still alive, computed in C. */
typedef struct {
    int64_t count, sum_amount, sum_value, max_amount, big;
    int64_t region_count[N_REGIONS], region_sum[N_REGIONS];
} totals;

static totals expected(void) {
    totals t = {0};
    for (int o = 1; o <= N_ORDERS; o++) {
        if (!orders[o].alive) continue;
        int r = customers[orders[o].customer_id].region;
        t.count++;
        t.sum_amount += orders[o].amount;
        t.sum_value += (int64_t)orders[o].amount * orders[o].qty;
        if (orders[o].amount > t.max_amount) t.max_amount = orders[o].amount;
        if (orders[o].amount > 9000) t.big++;
        t.region_count[r]++;
        t.region_sum[r] += orders[o].amount;
    }
    return t;
}

static void check_aggregates(const char *label) {
    totals e = expected();
    int64_t count = query_int("SELECT count(*) FROM orders");
    int64_t sum = query_int("SELECT sum(amount) FROM orders");
    int64_t value = query_int("SELECT sum(amount * qty) FROM orders");
    int64_t max = query_int("SELECT max(amount) FROM orders");
    int64_t big = query_int("SELECT count(*) FROM orders WHERE amount > 9000");
    printf("%s: count=%" PRId64 " sum=%" PRId64 " value=%" PRId64 " max=%" PRId64
           " big=%" PRId64 "\n", label, count, sum, value, max, big);
    CHECK(count == e.count, "%s: count %" PRId64 " != %" PRId64, label, count, e.count);
    CHECK(sum == e.sum_amount, "%s: sum %" PRId64 " != %" PRId64, label, sum, e.sum_amount);
    CHECK(value == e.sum_value, "%s: value %" PRId64 " != %" PRId64, label, value, e.sum_value);
    CHECK(max == e.max_amount, "%s: max %" PRId64 " != %" PRId64, label, max, e.max_amount);
    CHECK(big == e.big, "%s: big %" PRId64 " != %" PRId64, label, big, e.big);

    /* A JOIN with GROUP BY: orders per customer region. */
    sqlite3_stmt *st = prepare(
        "SELECT c.region, count(*), sum(o.amount) FROM orders o"
        " JOIN customers c ON c.id = o.customer_id GROUP BY c.region ORDER BY c.region");
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int r = sqlite3_column_int(st, 0);
        int64_t n = sqlite3_column_int64(st, 1), s = sqlite3_column_int64(st, 2);
        printf("%s: region %d: orders=%" PRId64 " sum=%" PRId64 "\n", label, r, n, s);
        CHECK(r == rows && r < N_REGIONS, "%s: unexpected region %d", label, r);
        if (r >= 0 && r < N_REGIONS)
            CHECK(n == e.region_count[r] && s == e.region_sum[r],
                  "%s: region %d differs from C", label, r);
        rows++;
    }
    sqlite3_finalize(st);
    CHECK(rows == N_REGIONS, "%s: %d regions", label, rows);
    fflush(stdout);
}

/* The five customers with the largest total, by a JOIN + ORDER BY + LIMIT,
 * checked against a selection done in C. */
static void check_top_customers(void) {
    static int64_t total[N_CUSTOMERS + 1];
    memset(total, 0, sizeof total);
    for (int o = 1; o <= N_ORDERS; o++)
        if (orders[o].alive) total[orders[o].customer_id] += orders[o].amount;

    sqlite3_stmt *st = prepare(
        "SELECT c.id, c.name, sum(o.amount) AS t FROM customers c"
        " JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY t DESC, c.id LIMIT 5");
    int rank = 0;
    int64_t prev_total = INT64_MAX;
    int prev_id = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int id = sqlite3_column_int(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        int64_t t = sqlite3_column_int64(st, 2);
        rank++;
        printf("top %d: %s total=%" PRId64 "\n", rank, name, t);
        /* Expected: the best (total, then smallest id) not yet listed. */
        int best = 0;
        for (int c = 1; c <= N_CUSTOMERS; c++) {
            int after_prev = total[c] < prev_total || (total[c] == prev_total && c > prev_id);
            if (after_prev && (best == 0 || total[c] > total[best])) best = c;
        }
        CHECK(id == best && t == total[best], "top %d: customer %d (%" PRId64 "), C says %d (%" PRId64 ")",
              rank, id, t, best, total[best]);
        prev_total = total[best];
        prev_id = best;
    }
    sqlite3_finalize(st);
    CHECK(rank == 5, "top customers: %d rows", rank);
    fflush(stdout);
}

/* One lookup for each of the first n_customers customers through a reused
 * prepared statement (a full scan of orders each before the index exists, an
 * index search after), and a LIKE scan over the text column. */
static void check_per_customer(int n_customers) {
    static int64_t count[N_CUSTOMERS + 1], sum[N_CUSTOMERS + 1];
    memset(count, 0, sizeof count);
    memset(sum, 0, sizeof sum);
    for (int o = 1; o <= N_ORDERS; o++)
        if (orders[o].alive) {
            count[orders[o].customer_id]++;
            sum[orders[o].customer_id] += orders[o].amount;
        }
    sqlite3_stmt *st = prepare("SELECT count(*), coalesce(sum(amount), 0) FROM orders"
                               " WHERE customer_id = ?1");
    int mismatches = 0;
    int64_t checksum = 0;
    for (int c = 1; c <= n_customers; c++) {
        sqlite3_bind_int(st, 1, c);
        if (sqlite3_step(st) != SQLITE_ROW) die_sql("per-customer query");
        int64_t n = sqlite3_column_int64(st, 0), s = sqlite3_column_int64(st, 1);
        if (n != count[c] || s != sum[c]) mismatches++;
        checksum = checksum * 31 + n * 100003 + s;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    printf("per-customer lookups: %d, checksum=%016" PRIx64 "\n", n_customers, (uint64_t)checksum);
    CHECK(mismatches == 0, "per-customer lookups: %d customers differ from C", mismatches);

    /* "order N of customer 42" ends with "customer 42" only for customer 42. */
    int64_t like = query_int("SELECT count(*) FROM orders WHERE note LIKE '%of customer 42'");
    printf("LIKE '%%of customer 42': %" PRId64 "\n", like);
    CHECK(like == count[42], "LIKE: %" PRId64 " rows, C says %" PRId64, like, count[42]);
    fflush(stdout);
}

static void update_and_delete(void) {
    exec("BEGIN");
    exec("UPDATE orders SET amount = amount + 7 WHERE qty = 3");
    int64_t changed = sqlite3_changes(db);
    exec("DELETE FROM orders WHERE amount < 500");
    int64_t deleted = sqlite3_changes(db);
    exec("COMMIT");

    int64_t e_changed = 0, e_deleted = 0;
    for (int o = 1; o <= N_ORDERS; o++) {
        if (orders[o].qty == 3) { orders[o].amount += 7; e_changed++; }
        if (orders[o].amount < 500) { orders[o].alive = 0; e_deleted++; }
    }
    printf("updated %" PRId64 " rows, deleted %" PRId64 " rows\n", changed, deleted);
    CHECK(changed == e_changed, "UPDATE changed %" PRId64 ", expected %" PRId64, changed, e_changed);
    CHECK(deleted == e_deleted, "DELETE removed %" PRId64 ", expected %" PRId64, deleted, e_deleted);
    fflush(stdout);
}

static void open_db(void) {
    if (sqlite3_open_v2(DB_PATH, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        die_sql("open " DB_PATH);
}

int main(void) {
    struct stat st;
    if (stat(DB_PATH, &st) == 0) {
        fprintf(stderr, "sqlite: %s exists already; run with an empty /data\n", DB_PATH);
        return 1;
    }
    sqlite3_vfs *vfs = sqlite3_vfs_find(NULL);
    printf("sqlite %s, vfs %s\n", sqlite3_libversion(), vfs ? vfs->zName : "(none)");
    /* guests/build.sh selects the lock-free VFS; SQLite's WASI default would
     * be unix-dotfile, which creates test.db.lock directories. */
    CHECK(vfs && strcmp(vfs->zName, "unix-none") == 0, "default VFS is not unix-none");
    generate();

    open_db();
    create_and_fill();
    crvm_yield(10);
    check_aggregates("after insert");
    check_top_customers();
    check_per_customer(N_CUSTOMERS);
    crvm_yield(11);
    update_and_delete();
    check_aggregates("after update");
    check_per_customer(N_CUSTOMERS);
    crvm_yield(12);
    if (sqlite3_close(db) != SQLITE_OK) die_sql("close");
    db = NULL;

    /* Everything must have reached the file: reopen and check again. */
    open_db();
    sqlite3_stmt *ic = prepare("PRAGMA integrity_check");
    const char *res = sqlite3_step(ic) == SQLITE_ROW ? (const char *)sqlite3_column_text(ic, 0) : "(none)";
    printf("integrity_check: %s\n", res);
    CHECK(strcmp(res, "ok") == 0, "integrity_check: %s", res);
    sqlite3_finalize(ic);
    check_aggregates("reopened");
    int64_t customers_n = query_int("SELECT count(*) FROM customers");
    CHECK(customers_n == N_CUSTOMERS, "customers: %" PRId64, customers_n);
    if (sqlite3_close(db) != SQLITE_OK) die_sql("close");
    db = NULL;

    if (stat(DB_PATH "-journal", &st) == 0) CHECK(0, "%s-journal left behind", DB_PATH);
    if (failures) {
        fprintf(stderr, "sqlite: %d check(s) failed\n", failures);
        return 1;
    }
    printf("sqlite: ok\n");
    return 0;
}
