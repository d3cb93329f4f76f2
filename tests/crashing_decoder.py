"""A check_data decoding process that dies by SIGSEGV on every file whose path holds "crash", as a decoder
crash would: run by test_bad_input.py through check_data's real parent, which must name the file and go on."""

import os
import signal

from dali_mixup import check_data


def main(connection, threads, batch_size, audio):
    sniffed, bad = check_data._sniffed, check_data._Decoder.bad

    def marked(specs, audio):
        good, broken = sniffed(specs, audio)
        return [(k, b"crash" if "crash" in specs[k] else blob) for k, blob in good], broken

    def crash_or_decode(self, batch):
        if any(blob == b"crash" for _, blob in batch):
            os.kill(os.getpid(), signal.SIGSEGV)
        return bad(self, batch)

    check_data._sniffed, check_data._Decoder.bad = marked, crash_or_decode
    check_data._decoder_main(connection, threads, batch_size, audio)
