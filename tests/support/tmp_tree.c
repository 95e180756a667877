/* tmp_tree.c — see tmp_tree.h. */
#include "tmp_tree.h"

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

void bg_tmp_dir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}
