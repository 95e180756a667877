/*
 * tmp_tree.h — flat temporary directories for tests and benches: remove one
 * with the files in it (a data directory: no subdirectories). Any thread.
 */
#ifndef BG_TMP_TREE_H
#define BG_TMP_TREE_H

/* Unlink every entry of dir (not recursive), then rmdir it; errors ignored. */
void bg_tmp_dir_remove(const char *dir);

#endif
