#!/usr/bin/perl
# sign_maildkim.pl -- sign messages with Mail::DKIM::Signer (reverse-direction
# interop for dkimpress).
#
#   perl sign_maildkim.pl --key DOMAIN:SELECTOR:KEYFILE [--key ...]
#        [--canon HEADER/BODY] --outdir DIR MSG...
#
# One rsa-sha256 DKIM-Signature per --key, in the order given, the first on
# top.  KEYFILE: an RSA PEM key, PKCS#1 or PKCS#8 (Mail::DKIM 1.20230212
# cannot sign ed25519-sha256).  Default canonicalization: relaxed/relaxed.
#
# The message is first put in SMTP form (bare LF -> CRLF; a bare CR is left
# alone), then signed; DIR/BASENAME gets the signature fields followed by
# that message.  Signed fields: Mail::DKIM's default list plus
# List-Unsubscribe-Post and Feedback-ID.  The b= value is folded
# (Mail::DKIM::TextWrap via prettify_safe).
#
# Mail::DKIM 1.20230212 signs a simple body without a final CRLF without
# adding the CRLF RFC 6376 3.4.3 requires; run.sh expects RFC verifiers,
# dkimpress included, to fail those cases (its QUIRKS table).
#
# Prints "PATH<TAB>ok" or "PATH<TAB>error<TAB>why" per message; exit 0 when
# every message was signed, else 1.
use strict;
use warnings;

use File::Basename qw(basename);
use File::Path qw(make_path);
use Mail::DKIM::PrivateKey;
use Mail::DKIM::Signer;
use Mail::DKIM::TextWrap;

sub usage {
    print STDERR "usage: sign_maildkim.pl --key D:S:KEYFILE [--key ...]"
        . " [--canon H/B] --outdir DIR MSG...\n";
    exit 2;
}

my (@keys, $outdir);
my $canon = 'relaxed/relaxed';
my @paths;
while (@ARGV) {
    my $a = shift @ARGV;
    if ($a eq '--key' && @ARGV) {
        my @k = split /:/, shift(@ARGV), 3;
        usage() unless @k == 3;
        push @keys, \@k;
    }
    elsif ($a eq '--canon' && @ARGV) { $canon = shift @ARGV; }
    elsif ($a eq '--outdir' && @ARGV) { $outdir = shift @ARGV; }
    elsif ($a =~ /^-/) { usage(); }
    else { push @paths, $a; }
}
usage() unless @keys && defined $outdir;
make_path($outdir) unless -d $outdir;

# load every key once
foreach my $k (@keys) {
    $k->[3] = Mail::DKIM::PrivateKey->load(File => $k->[2]);
}

my $bad = 0;
$| = 1;
foreach my $path (@paths) {
    my $ok = eval {
        open(my $fh, '<:raw', $path) or die "cannot read: $!\n";
        my $msg = do { local $/; <$fh> };
        close $fh;
        $msg =~ s/(?<!\r)\n/\r\n/g;
        my $sigs = '';
        foreach my $k (@keys) {
            my $signer = Mail::DKIM::Signer->new(
                Algorithm => 'rsa-sha256',
                Method    => $canon,
                Domain    => $k->[0],
                Selector  => $k->[1],
                Key       => $k->[3],
                Headers   => 'List-Unsubscribe-Post:Feedback-ID',
            );
            $signer->PRINT($msg);
            $signer->CLOSE;
            my $sig = $signer->signature or die "no signature made\n";
            $sig->prettify_safe;
            my $s = $sig->as_string;
            $s =~ s/(?<!\r)\n/\r\n/g;
            $sigs .= $s . "\r\n";
        }
        my $out = "$outdir/" . basename($path);
        open(my $oh, '>:raw', $out) or die "cannot write $out: $!\n";
        print $oh $sigs, $msg or die "write $out: $!\n";
        close $oh or die "close $out: $!\n";
        1;
    };
    if ($ok) {
        print "$path\tok\n";
    } else {
        my $e = $@ || 'unknown error';
        $e =~ s/\s+/ /g;
        print "$path\terror\t$e\n";
        $bad++;
    }
}
exit($bad ? 1 : 0);
