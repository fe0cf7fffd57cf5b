package integration

import (
	"database/sql"
	"fmt"
	"os"
	"strconv"
)

// writerEnv makes the test binary act as a writer process: it inserts rows
// into the database named by PAGEFS_WRITER_DB and appends each id that
// SQLite acknowledged to the file PAGEFS_WRITER_LOG (outside the mount),
// until it fails.
const writerEnv = "PAGEFS_WRITER_DB"

func writerMain() int {
	path, logPath := os.Getenv(writerEnv), os.Getenv("PAGEFS_WRITER_LOG")
	mode := os.Getenv("PAGEFS_WRITER_MODE")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode("+mode+")&_pragma=synchronous(FULL)")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS acked (id INTEGER PRIMARY KEY, v BLOB)`); err != nil {
		fmt.Fprintln(os.Stderr, "create:", err)
		return 1
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer log.Close()
	start, _ := strconv.Atoi(os.Getenv("PAGEFS_WRITER_START"))
	for id := start; ; id++ {
		if _, err := db.Exec(`INSERT INTO acked (id, v) VALUES (?, randomblob(?))`, id, 50+id%2000); err != nil {
			fmt.Fprintln(os.Stderr, "insert:", err)
			return 0
		}
		if _, err := fmt.Fprintln(log, id); err != nil {
			return 1
		}
	}
}
