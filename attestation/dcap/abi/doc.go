// Package abi turns Intel DCAP bytes into typed Go values: the pieces every ECDSA quote shares
// (header, SGX enclave report body, signature data, certification data), the SGX extension of a
// PCK certificate, TCB info and QE identity JSON, and collateral files recognised by content.
//
// It only parses. It never checks a signature, a certificate chain, a validity window or a TCB
// level, and nothing it returns is trusted: that is the job of the verify and validate packages.
// Every parser rejects malformed input with an error naming the problem and must never panic.
package abi
