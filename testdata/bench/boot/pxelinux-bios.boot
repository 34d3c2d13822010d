# One machine's PXELINUX boot, as issue 19's boot storm has it: a size
# probe, a 1 MiB NBP at blksize 1468 x windowsize 4, PXELINUX's search of
# pxelinux.cfg/ (8 names that do not exist), the config, then an 8 MiB
# kernel and a 16 MiB initrd lock-step at 1468.
# Play it with: tftpbench -boot pxelinux-bios.boot -server HOST:PORT -c 100 -n 100 -src 127.1.0.0/16
# The sizes are those of the files served (testdata/bench/fleet.sh makes
# them); tsize makes every get check that the whole file arrived.

probe pxelinux.0 blksize=1468                      # RRQ with tsize; the client aborts with ERROR 8 after the OACK
get   pxelinux.0 blksize=1468 windowsize=4 tsize   # the NBP
miss  pxelinux.cfg/01-{mac}                        # ARP type 01 and the MAC
miss  pxelinux.cfg/{hex} pxelinux.cfg/{hex:7} pxelinux.cfg/{hex:6} pxelinux.cfg/{hex:5}
miss  pxelinux.cfg/{hex:4} pxelinux.cfg/{hex:3} pxelinux.cfg/{hex:2}   # the IP in hex, one digit shorter each time
get   pxelinux.cfg/default blksize=1468 tsize      # the config (about 300 bytes)
get   vmlinuz blksize=1468 tsize
get   initrd.img blksize=1468 tsize
