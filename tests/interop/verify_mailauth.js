#!/usr/bin/env node
// verify_mailauth.js -- check every DKIM-Signature of many messages with
// mailauth (npm), for the dkimpress interop suite.
//
//   MAILAUTH_DIR=DIR node verify_mailauth.js --dns-file FILE [--expect N]
//        [--rsa-only] [--list LIST] [MSG...]
//
// DIR is where `npm install mailauth` put node_modules/ (run.sh installs it
// into a cache outside the repository; see README.md).  FILE holds key
// records, one per line: SELECTOR._domainkey.DOMAIN, a TAB, the TXT
// record.  Keys never come from the network: mailauth's dkimVerify() takes
// a `resolver(name, type)` function (its documented option), and ours
// answers from FILE only: [[record]] for a TXT name it knows, ENOTFOUND
// otherwise.
//
// One output line per message:
//   PATH<TAB>pass|fail<TAB>sigs=N pass=P fail=F; d=D s=S a=A: RESULT; ...
// A message passes when every counted signature passes and there are N of
// them (--expect; without it, at least one).  mailauth drops a signature
// it cannot use (unknown a= or c=, no d= or s=) without a result: such a
// message shows fewer signatures than DKIM-Signature fields and fails.
// The last line is "summary: M messages, P pass, F fail".  Exit 0 if all
// pass, else 1.  mailauth verifies rsa-sha256 and ed25519-sha256, so
// --rsa-only (accepted for the same command line as the other harnesses)
// only lists non-RSA signatures as "skipped".
//
// Delivery: bare LF becomes CRLF (SMTP form) before the message is fed in;
// dkimpress output is CRLF already.  A bare CR is left alone.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

function usage() {
    process.stderr.write('usage: MAILAUTH_DIR=DIR node verify_mailauth.js --dns-file FILE ' +
        '[--expect N] [--rsa-only] [--list LIST] [MSG...]\n');
    process.exit(2);
}

function loadDns(file) {
    const keys = new Map();
    for (const raw of fs.readFileSync(file, 'latin1').split('\n')) {
        const line = raw.replace(/\r$/, '');
        if (!line.trim() || line.startsWith('#')) {
            continue;
        }
        let m = /^([^\t]+)\t(.*)$/.exec(line) || /^(\S+)\s+(.*)$/.exec(line);
        if (!m) {
            continue;
        }
        keys.set(m[1].trim().replace(/\.$/, '').toLowerCase(), m[2].trim());
    }
    return keys;
}

// Bare LF -> CRLF, a bare CR stays (as the other harnesses do).
function crlf(buf) {
    const out = [];
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
        if (buf[i] === 0x0a && (i === 0 || buf[i - 1] !== 0x0d)) {
            out.push(buf.subarray(start, i), Buffer.from('\r\n'));
            start = i + 1;
        }
    }
    out.push(buf.subarray(start));
    return Buffer.concat(out);
}

// The DKIM-Signature fields of the header block, for counting.
function countSignatures(buf) {
    let end = buf.indexOf('\r\n\r\n');
    const head = (end < 0 ? buf : buf.subarray(0, end + 2)).toString('latin1');
    const m = head.match(/^dkim-signature[ \t]*:/gim);
    return m ? m.length : 0;
}

async function main(argv) {
    let dnsFile = null;
    let listFile = null;
    let expect = null;
    let rsaOnly = false;
    const paths = [];
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === '--dns-file' && i + 1 < argv.length) {
            dnsFile = argv[++i];
        } else if (a === '--expect' && i + 1 < argv.length) {
            expect = parseInt(argv[++i], 10);
        } else if (a === '--list' && i + 1 < argv.length) {
            listFile = argv[++i];
        } else if (a === '--rsa-only') {
            rsaOnly = true;
        } else if (a === '--') {
            paths.push(...argv.slice(i + 1));
            break;
        } else if (a.startsWith('-') && a !== '-') {
            usage();
        } else {
            paths.push(a);
        }
    }
    if (dnsFile === null) {
        usage();
    }
    const dir = process.env.MAILAUTH_DIR;
    if (!dir) {
        process.stderr.write('verify_mailauth.js: set MAILAUTH_DIR to the directory holding node_modules/mailauth\n');
        process.exit(2);
    }
    const { dkimVerify } = require(require.resolve('mailauth/lib/dkim/verify', { paths: [path.resolve(dir)] }));
    if (listFile) {
        for (const l of fs.readFileSync(listFile, 'utf8').split('\n')) {
            if (l.trim()) {
                paths.push(l.replace(/\r$/, ''));
            }
        }
    }
    const keys = loadDns(dnsFile);
    const resolver = async (name, type) => {
        const rec = type === 'TXT' ? keys.get(String(name).replace(/\.$/, '').toLowerCase()) : undefined;
        if (rec === undefined) {
            const err = new Error(`no ${type} record for ${name} in the dns-file`);
            err.code = 'ENOTFOUND';
            throw err;
        }
        // a TXT RR is a list of strings of at most 255 octets each
        const chunks = [];
        for (let i = 0; i < rec.length; i += 255) {
            chunks.push(rec.slice(i, i + 255));
        }
        return [chunks.length ? chunks : ['']];
    };

    let nmsg = 0;
    let npass = 0;
    let nfail = 0;
    for (const p of paths) {
        nmsg++;
        let msg;
        try {
            msg = crlf(fs.readFileSync(p));
        } catch (e) {
            console.log(`${p}\tfail\tcannot read: ${e.message}`);
            nfail++;
            continue;
        }
        const parts = [];
        let counted = 0;
        let sp = 0;
        let sf = 0;
        let results = [];
        try {
            const res = await dkimVerify(msg, { resolver, minBitLength: 1024 });
            // an unsigned message gets one "none" result with no signature
            results = (res.results || []).filter(r => r.signature || !(r.status && r.status.result === 'none'));
        } catch (e) {
            parts.push(`cannot verify: ${e.name}: ${e.message}`);
        }
        for (const r of results) {
            const d = r.signingDomain || '?';
            const s = r.selector || '?';
            const a = r.algo || '?';
            if (rsaOnly && !String(a).toLowerCase().startsWith('rsa-')) {
                parts.push(`d=${d} s=${s} a=${a}: skipped (not RSA)`);
                continue;
            }
            counted++;
            const st = (r.status && r.status.result) || 'none';
            if (st === 'pass') {
                sp++;
                parts.push(`d=${d} s=${s} a=${a}: pass`);
            } else {
                sf++;
                const why = String((r.status && r.status.comment) || '').replace(/[\t\r\n]/g, ' ').slice(0, 300);
                parts.push(`d=${d} s=${s} a=${a}: fail (${st}${why ? ': ' + why : ''})`);
            }
        }
        const nfields = countSignatures(msg);
        if (results.length < nfields) {
            // dropped without a result: count them as failures
            const dropped = nfields - results.length;
            parts.push(`${dropped} DKIM-Signature field(s) without a result (mailauth skipped them)`);
            counted += dropped;
            sf += dropped;
        }
        if (nfields === 0) {
            parts.push('no signature found');
        }
        const good = sf === 0 && (expect !== null ? counted === expect : counted > 0);
        console.log(`${p}\t${good ? 'pass' : 'fail'}\tsigs=${counted} pass=${sp} fail=${sf}; ${parts.join('; ')}`);
        if (good) {
            npass++;
        } else {
            nfail++;
        }
    }
    console.log(`summary: ${nmsg} messages, ${npass} pass, ${nfail} fail`);
    return nfail === 0 && nmsg > 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
    rc => { process.exitCode = rc; },
    e => { console.log(`verify_mailauth.js: ${e.stack || e}`); process.exitCode = 1; });
