/*
 * A stand-in bcryptprimitives.dll for Wine 8, which has none: it exports ProcessPrng, the
 * random-bytes call that Rust's standard library imports on Windows (the addon cannot load
 * without it). Built with mingw by .ci/wine.sh and copied into the test prefix's system32;
 * never shipped. ProcessPrng is documented never to fail, so it fills the buffer from
 * RtlGenRandom (advapi32's SystemFunction036), in pieces that fit its ULONG length.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
  while (length > 0) {
    ULONG piece = length > 0x40000000 ? 0x40000000 : (ULONG)length;
    if (!SystemFunction036(data, piece))
      return FALSE;
    data += piece;
    length -= piece;
  }
  return TRUE;
}
