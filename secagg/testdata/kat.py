# Independent reference for secagg's known-answer vectors (TestShamirVectors,
# TestPRGVectors): GF(2^16) Shamir with bitwise arithmetic, and AES-128-CTR
# from the Python cryptography package. Run: python3 kat.py
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

POLY = 0x1002D

def mul(a, b):
    p = 0
    for i in range(16):
        if (b >> i) & 1:
            p ^= a << i
    for i in range(31, 15, -1):
        if (p >> i) & 1:
            p ^= POLY << (i - 16)
    return p

def shares(secret, coef_bytes, n, t):
    deg = t - 1
    coef = [int.from_bytes(coef_bytes[2*i:2*i+2], 'big') for i in range(8*deg)]
    out = []
    for x in range(1, n + 1):
        s = b''
        for w in range(8):
            a = [int.from_bytes(secret[2*w:2*w+2], 'big')] + coef[w*deg:(w+1)*deg]
            y, xp = 0, 1
            for c in a:
                y ^= mul(c, xp)
                xp = mul(xp, x)
            s += y.to_bytes(2, 'big')
        out.append(s.hex())
    return out

secret = bytes(range(16))
coef = bytes(range(100, 100 + 2*2*8))
print("shamir n=5 t=3")
for s in shares(secret, coef, 5, 3):
    print(s)
key = bytes(range(16))
ks = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(32))
print("prg", ks.hex())
print("words32", [int.from_bytes(ks[4*i:4*i+4], 'little') for i in range(4)])
print("words64", [int.from_bytes(ks[8*i:8*i+8], 'little') for i in range(2)])
