-- Range reads (ListTimeEntries, the hot-window proof) only want live rows, ordered by
-- (entry_date, entry_id) and compared on the uuid itself: a partial index serves them and
-- skips deleted rows. The old full index served nothing else: dropped, one less index for the
-- upserts to maintain.
CREATE INDEX time_entries_live_by_user_date ON time_entries (email, entry_date, entry_id)
    WHERE NOT deleted;
DROP INDEX time_entries_by_user_date;
